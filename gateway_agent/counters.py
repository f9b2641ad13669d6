"""What an enforcement backend can tell telemetry: cumulative counters, read cheaply.

The nft backend reads them from its table; telemetry turns successive reads into deltas
(a counter that went down was reset, e.g. by a full apply, and counts from zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Metric names shared by the backend (producer) and telemetry (consumer).
HOST_EGRESS = "host_egress"        # dimension: LAN host address
HOST_FLOWS = "host_flows"          # dimension: LAN host address; packets = new flows
CATEGORY_BYTES = "category_bytes"  # dimension: "<category>|<LAN host>"
RULE_HITS = "rule_hits"            # dimension: "<rule name>"
IOC_HITS = "ioc_hits"              # dimension: "<ioc value>|<LAN host>"
IOC_SET_HITS = "ioc_set_hits"      # dimension: set name (ioc_v4, ioc_cidr6, ...)


@dataclass(frozen=True)
class CounterSample:
    metric: str
    dimension: str
    packets: int
    bytes: int


@runtime_checkable
class CounterSource(Protocol):
    def read_counters(self) -> list[CounterSample]: ...
