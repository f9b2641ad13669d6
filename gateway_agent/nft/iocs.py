"""Where each IOC goes in the table: its set and canonical element text, or why it is refused."""

from __future__ import annotations

import socket

from gateway_agent.nft.config import NftConfig
from gateway_agent.nft.names import cidr_set_name, ioc_set
from gateway_agent.nft.validate import parse_address, parse_cidr
from gateway_agent.refusals import Refusal
from gateway_agent.state import DesiredState
from mssp.common.names import valid_domain
from mssp.v1 import common_pb2

DNS = "dns"  # place_ioc's "set" for a domain: sinkholed by dnsmasq, not in the table


def merge_expiry(old: int | None, new: int) -> int:
    """Two IOCs for one element (e.g. global and tenant feeds): the later expiry wins, 0 = never."""
    if old is None:
        return new
    if old == 0 or new == 0:
        return 0
    return max(old, new)


def effective_expiry(state: DesiredState, key: tuple[int, str], now_ms: int) -> int | None:
    """Merged expiry of every live IOC with this key across channels; None when none is live."""
    out: int | None = None
    for ch in state.channels.values():
        ioc = ch.iocs.get(key)
        if ioc is not None and (not ioc.expires_at_ms or ioc.expires_at_ms > now_ms):
            out = merge_expiry(out, ioc.expires_at_ms)
    return out


def place_ioc(ioc_type: int, value: str, config: NftConfig) -> tuple[str, str] | str:
    """(set name or DNS, canonical element text) for an IOC, or the reason it is refused."""
    if ioc_type == common_pb2.IOC_TYPE_IPV4:
        text = parse_address(value, 4)
        return (ioc_set(4), text) if text else "not an IPv4 address"
    if ioc_type == common_pb2.IOC_TYPE_IPV6:
        text = parse_address(value, 6)
        return (ioc_set(6), text) if text else "not an IPv6 address"
    if ioc_type in (common_pb2.IOC_TYPE_CIDR4, common_pb2.IOC_TYPE_CIDR6):
        version = 4 if ioc_type == common_pb2.IOC_TYPE_CIDR4 else 6
        minimum = config.min_prefix4 if version == 4 else config.min_prefix6
        parsed = parse_cidr(value, version, minimum)
        if parsed is None:
            return f"not a canonical IPv{version} CIDR of prefix /{minimum} or longer"
        return cidr_set_name(version, parsed[1]), parsed[0]
    if ioc_type == common_pb2.IOC_TYPE_DOMAIN:
        return (DNS, value) if valid_domain(value) else "not a canonical domain name"
    return "unsupported IOC type"


def collect_iocs(state: DesiredState, config: NftConfig, now: int, rejected: list[Refusal]
                 ) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """(set name -> element text -> expires_at_ms, sinkholed domain -> expires_at_ms) of every live IOC.

    The hot loop of a million-IOC apply, hence the inlined fast paths. Expired IOCs are skipped
    (the kernel would not hold them anyway). Addresses take inet_pton + inet_ntop (the element
    text is re-rendered from the parsed bytes); a CIDR's prefix must be 1-3 ASCII digits within
    the limits and its host bits zero. The same checks as place_ioc(), which handles everything
    else (domains, refusals with their reason, appended to `rejected`).
    """
    pton, ntop = socket.inet_pton, socket.inet_ntop
    t4, t6 = common_pb2.IOC_TYPE_IPV4, common_pb2.IOC_TYPE_IPV6
    c4, c6 = common_pb2.IOC_TYPE_CIDR4, common_pb2.IOC_TYPE_CIDR6
    ioc_sets: dict[str, dict[str, int]] = {ioc_set(4): {}, ioc_set(6): {}}
    sinkholes: dict[str, int] = {}
    fast = {  # single addresses: (family, target set)
        t4: (socket.AF_INET, ioc_sets[ioc_set(4)]),
        t6: (socket.AF_INET6, ioc_sets[ioc_set(6)]),
    }
    cidr = {  # CIDRs: (family, bits, min prefix, host masks by length, set names by length)
        c4: (socket.AF_INET, 32, config.min_prefix4, [(1 << (32 - n)) - 1 for n in range(33)],
             [cidr_set_name(4, n) for n in range(33)]),
        c6: (socket.AF_INET6, 128, config.min_prefix6, [(1 << (128 - n)) - 1 for n in range(129)],
             [cidr_set_name(6, n) for n in range(129)]),
    }
    for ch in state.channels.values():
        for ioc in ch.iocs.values():
            kind, value, expires = ioc.type, ioc.value, ioc.expires_at_ms
            if expires and expires <= now:
                continue
            text = None
            if kind in fast:
                family, target = fast[kind]
                try:
                    text = ntop(family, pton(family, value))
                except (OSError, ValueError):
                    pass
            elif kind in cidr:
                family, bits, minimum, hostmasks, names = cidr[kind]
                addr, _, plen = value.partition("/")
                length = int(plen) if 1 <= len(plen) <= 3 and plen.isascii() and plen.isdigit() else -1
                if minimum <= length <= bits:
                    try:
                        packed = pton(family, addr)
                    except (OSError, ValueError):
                        packed = None
                    if packed is not None and not int.from_bytes(packed, "big") & hostmasks[length]:
                        text = ntop(family, packed)
                        target = ioc_sets.get(names[length])
                        if target is None:
                            target = ioc_sets[names[length]] = {}
            if text is None:
                placed = place_ioc(kind, value, config)
                if isinstance(placed, str):
                    rejected.append(Refusal("ioc", str(value), placed))
                    continue
                set_name, text = placed
                target = sinkholes if set_name == DNS else ioc_sets.setdefault(set_name, {})
            old = target.get(text)
            target[text] = expires if old is None else merge_expiry(old, expires)
    return ioc_sets, sinkholes
