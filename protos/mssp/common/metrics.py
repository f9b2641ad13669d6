"""Names that telemetry records and alerts carry: the agent produces them, the controller stores,
queries and shows them. One definition, so a renamed metric cannot silently stop being counted."""

from __future__ import annotations

import enum

# Counters read from the enforcement backend.
HOST_EGRESS = "host_egress"        # dimension: LAN host address
HOST_FLOWS = "host_flows"          # dimension: LAN host address; packets = new flows
CATEGORY_BYTES = "category_bytes"  # dimension: "<category>|<LAN host>"
RULE_HITS = "rule_hits"            # dimension: "<rule name>"
IOC_HITS = "ioc_hits"              # dimension: "<ioc value>|<LAN host>"
IOC_SET_HITS = "ioc_set_hits"      # dimension: set name (ioc_v4, ioc_cidr6, ...)
# Counted from the DNS query log.
DNS_QUERIES = "dns_queries"  # dimension "<domain>|<LAN host>", count = queries seen
DNS_BLOCKED = "dns_blocked"  # dimension "<domain>|<LAN host>", count = answered by a sinkhole


class AlertKind(enum.StrEnum):
    """What the controller raises from telemetry."""

    IOC_HIT = "ioc_hit"
    UPLOAD_THRESHOLD = "upload_threshold"


ALERT_KINDS: tuple[str, ...] = tuple(k.value for k in AlertKind)
