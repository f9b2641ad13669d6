"""Every object name in table ``inet mssp``: built here, and parsed back here only.

The compiler, the delta, the counter reader, the backend and the dnsmasq configuration all
refer to the same sets, counters and chains; one definition keeps them from drifting apart.
Sets that hold addresses of one IP version end in ``_v4``/``_v6`` (`family_set`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

# ---- chains ------------------------------------------------------------------------------------

CHAIN_FILTER_FORWARD = "filter_forward"  # hook forward: egress filter
CHAIN_FILTER_OUTPUT = "filter_output"  # hook output: the router's own egress
CHAIN_ACCOUNT_FORWARD = "account_forward"  # hook forward, after the filter: accounting
CHAIN_EGRESS = "egress"
CHAIN_ROUTER_EGRESS = "router_egress"
CHAIN_IOC_CIDR = "ioc_cidr"
CHAIN_LAN_ACCOUNT = "lan_account"

# ---- named counters (one per verdict) ----------------------------------------------------------

VERDICT_DEFAULT = "default"
VERDICT_NEVER_BLOCK = "never_block"


def ioc_set(version: int) -> str:
    """The hash set of single IOC addresses; its verdict counter has the same name."""
    return f"ioc_v{version}"


def ioc_cidr_counter(version: int) -> str:
    """The counter of every CIDR IOC set of one IP version."""
    return f"ioc_cidr{version}"


IOC_SET_NAMES = (ioc_set(4), ioc_set(6), ioc_cidr_counter(4), ioc_cidr_counter(6))  # IOC verdict counters

_RULE_COUNTER_RE = re.compile(r"rule_([0-9]+)")


def rule_counter(index: int) -> str:
    """The counter (and comment prefix) of the policy rule at `index`."""
    return f"rule_{index}"


def rule_counter_index(name: str) -> int | None:
    """The rule index a counter name stands for; None when it is no rule counter."""
    m = _RULE_COUNTER_RE.fullmatch(name)
    return int(m[1]) if m else None


# ---- sets --------------------------------------------------------------------------------------

MARKER_SET = "applied"  # one element whose comment names the applied versions
MARKER_KEY = 1


def family_set(base: str, version: int) -> str:
    """The set of one IP version for a base name (dnsmasq's nftset targets, category sets...)."""
    return f"{base}_v{version}"


def set_version(name: str) -> int:
    """The IP version of a per-version set name."""
    return 4 if name.endswith("_v4") else 6


def never_block_set(version: int) -> str:
    return family_set("never_block", version)


_CIDR_SET_RE = re.compile(r"ioc_cidr([46])_p([0-9]{1,3})")


def cidr_set_name(version: int, length: int) -> str:
    """The hash set of CIDR IOCs of one prefix length (matched as ``daddr & mask``)."""
    return f"ioc_cidr{version}_p{length}"


def parse_cidr_set(name: str) -> tuple[int, int] | None:
    """(IP version, prefix length) of a CIDR IOC set name; None for any other name."""
    m = _CIDR_SET_RE.fullmatch(name)
    return (int(m[1]), int(m[2])) if m else None


def ioc_hits_set(version: int) -> str:
    """(LAN host, IOC address) pairs that hit an IOC, with per-element counters."""
    return family_set("ioc_hits", version)


def host_set(version: int) -> str:
    """Bytes let out per LAN host."""
    return family_set("host", version)


def flows_set(version: int) -> str:
    """New flows per LAN host."""
    return family_set("flows", version)


HOST_SETS = (host_set(4), host_set(6), flows_set(4), flows_set(6), ioc_hits_set(4), ioc_hits_set(6))


def category_base(category: str) -> str:
    """The category's counter name, and the base of the address sets dnsmasq fills for it."""
    return f"cat_{category}"


def category_set(category: str, version: int) -> str:
    return family_set(category_base(category), version)


_CATHOST_PREFIX = "cathost_"


def category_host_set(category: str, version: int) -> str:
    """Bytes per LAN host to the category's addresses."""
    return family_set(f"{_CATHOST_PREFIX}{category}", version)


def domain_base(domains: Sequence[str]) -> str:
    """The base of the address sets for one rule's (sorted) domain list: a digest of the list."""
    return "dom_" + hashlib.sha256("\n".join(domains).encode()).hexdigest()[:12]


# ---- parsing the counter sets back -------------------------------------------------------------

HOST_EGRESS_SET = "host"
HOST_FLOWS_SET = "flows"
IOC_HITS_SET = "ioc_hits"
CATEGORY_HOST_SET = "cathost"


def parse_counter_set(name: str) -> tuple[str, str, int] | None:
    """(kind, category or "", IP version) of a per-host counter set; None for any other set.

    kind is HOST_EGRESS_SET, HOST_FLOWS_SET, IOC_HITS_SET or CATEGORY_HOST_SET.
    """
    if name in HOST_SETS:
        return name[:-3], "", set_version(name)
    if name.startswith(_CATHOST_PREFIX):
        return CATEGORY_HOST_SET, name[len(_CATHOST_PREFIX):-3], set_version(name)
    return None


# ---- the applied marker ------------------------------------------------------------------------


def marker_text(global_seq: int, tenant_seq: int, policy_version: int, fingerprint: str,
                alliance_seq: int | None = None) -> str:
    """The marker element's comment: the applied versions and configuration (<= 128 bytes). The
    alliance seq is there only while the gateway follows that channel (the marker of one that never
    did reads as before)."""
    alliance = "" if alliance_seq is None else f" a={alliance_seq}"
    return f"mssp g={global_seq} t={tenant_seq}{alliance} p={policy_version} c={fingerprint}"
