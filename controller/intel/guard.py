"""The never-block guard: indicators a feed may name but the product must never block.

parse_ioc already refuses what would break the router itself (loopback, multicast, a /7). This
guard refuses what would break the customer or the service: private and special-purpose ranges,
the controller's and broker's own addresses, the operator's allow-list, public DNS resolvers,
popular domains and public suffixes. The importer asks it about every entry of every feed, so the
common answer ("may be blocked") costs one address parse, one bisect and one set lookup.

Resolvers come in two tiers. A network containing one of the few major services
(data/major_resolvers.txt: 8.8.8.8, 1.1.1.1, 9.9.9.9...) is refused. The ~63k addresses of MISP's
public-dns lists are mostly open resolvers on home routers, spread over a fifth of all /16s, so
they refuse only an IOC equal to one: a DROP-list /16 holding one stays blockable.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from controller.domain.errors import InvalidInput
from controller.domain.ioc import (
    MIN_PREFIX_V4,
    MIN_PREFIX_V6,
    IocKind,
    IocValue,
    canonical_network,
    parse_domain,
)
from controller.domain.names import show, type_name
from controller.intel.warninglists import (
    IntervalTable,
    network_bounds,
    never_block_data,
    parents_map,
    url_host_blockable,
    url_host_warning,
    vendor_domain,
)

__all__ = ["GuardConfig", "NeverBlockGuard", "url_host_blockable", "url_host_warning"]

# (range, what it is): special-purpose space no customer network may lose (RFC 6890 registries).
# The documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are
# deliberately absent: tests block them.
SPECIAL_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "the 'this network' range (RFC 1122)"),
    ("10.0.0.0/8", "a private range (RFC 1918)"),
    ("100.64.0.0/10", "the carrier-grade NAT range (RFC 6598)"),
    ("127.0.0.0/8", "the loopback range"),
    ("169.254.0.0/16", "the link-local range"),
    ("172.16.0.0/12", "a private range (RFC 1918)"),
    ("192.0.0.0/24", "the IETF protocol assignments range (RFC 6890)"),
    ("192.168.0.0/16", "a private range (RFC 1918)"),
    ("198.18.0.0/15", "the benchmarking range (RFC 2544)"),
    ("224.0.0.0/4", "the multicast range"),
    ("255.255.255.255/32", "the limited broadcast address"),
    ("240.0.0.0/4", "the reserved range (RFC 1112)"),
    ("::/128", "the unspecified address"),
    ("::1/128", "the loopback address"),
    ("::ffff:0:0/96", "the IPv4-mapped range"),
    ("64:ff9b:1::/48", "the local-use NAT64 range (RFC 8215)"),
    ("100::/64", "the discard-only range (RFC 6666)"),
    ("fc00::/7", "the unique local range (RFC 4193)"),
    ("fe80::/10", "the link-local range"),
    ("ff00::/8", "the multicast range"),
)
OWN = "one of the controller's own addresses (own_addresses)"
OWN_NAME = "one of the controller's own host names (own_addresses)"
ALLOWED = "an operator allow-list entry"

_DOMAIN = IocKind.DOMAIN  # a module global: attribute access on an Enum class costs ~0.1 us
Row = tuple[int, int, str]  # (first address, last address as integers, entry text)


def _looks_ip(text: str) -> bool:
    return ":" in text or all(ch.isdigit() or ch in "./" for ch in text)


def _own_host(entry: str) -> str:
    """The host in an advertised address: "h", "h:port", "[v6]:port" or "scheme://h:port/"."""
    text = entry.strip()
    if "://" in text:
        return urlsplit(text).hostname or ""
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        return text.partition(":")[0]
    return text


def _parse_entry(
    entry: object, field: str, *, own: bool
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | str:
    """An own address / allow-list entry as a network or a canonical domain; InvalidInput if neither."""
    if not isinstance(entry, str):
        raise InvalidInput(f"{field} entries must be strings, got {type_name(entry)}")
    text = _own_host(entry) if own else entry.strip()
    try:
        if _looks_ip(text):
            return ipaddress.ip_network(canonical_network(text))
        if own and text and "." not in text.rstrip("."):
            return ""  # a single-label name ("localhost"): no domain IOC can equal or contain it
        return parse_domain(text)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{field} entry {show(entry)} is not an address, network or domain: {exc}"
        ) from None


def _entries(value: object, field: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise InvalidInput(f"{field} must be a tuple of strings, got {type_name(value)}")
    return tuple(value)


def _prefix_limit(value: object, field: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{field} must be an integer from {low} to {high}, got {show(value)}")


@dataclass(frozen=True)
class GuardConfig:
    """What the guard refuses beyond the built-in lists; validated here so a bad setting fails at start."""

    max_prefix_v4: int = 8  # broadest prefix allowed (a /7 is refused); must be 8..32
    max_prefix_v6: int = 16  # 16..128
    own_addresses: tuple[str, ...] = ()  # controller's and broker's advertised addresses / host names
    allowlist: tuple[str, ...] = ()  # operator allow-list: canonical IOC texts (address, CIDR, domain)

    def __post_init__(self) -> None:
        _prefix_limit(self.max_prefix_v4, "max_prefix_v4", MIN_PREFIX_V4, 32)
        _prefix_limit(self.max_prefix_v6, "max_prefix_v6", MIN_PREFIX_V6, 128)
        object.__setattr__(self, "own_addresses", _entries(self.own_addresses, "own_addresses"))
        object.__setattr__(self, "allowlist", _entries(self.allowlist, "allowlist"))
        for entry in self.own_addresses:
            _parse_entry(entry, "own_addresses", own=True)
        for entry in self.allowlist:
            _parse_entry(entry, "allowlist", own=False)


def _relation(lo: int, hi: int, row: Row) -> str:
    start, end, _ = row
    if lo == start and hi == end:
        return "is"
    if lo <= start and end <= hi:
        return "contains"
    if start <= lo and hi <= end:
        return "is inside"
    return "overlaps"


def _said(value: str, relation: str, entry: str, what: str) -> str:
    if relation == "is":
        return f"refusing to block {value}: it is {what}"
    return f"refusing to block {value}: it {relation} {entry}, {what}"


Category = tuple[IntervalTable[Any], str | None]  # a category's rows, and what they are


class _Family:
    """Every refused interval of one address family, for "may this be blocked?" in one or two bisects.

    The built-in tables (special ranges, resolvers) and their union are built once per process and
    shared; a guard adds only its own small table of own addresses and allow-list entries, so one
    can be built per request. ``categories`` is the order reasons are given in; a ``what`` of None
    means the rows are labelled (entry, what) themselves.
    """

    def __init__(self, shared: _SharedFamily, own: IntervalTable[str], allowed: IntervalTable[str]) -> None:
        self.categories: list[Category] = [
            (table, what)
            for table, what in [shared.specials, (own, OWN), (allowed, ALLOWED), shared.majors]
            if len(table)
        ]
        self.exact, self.exact_what = shared.exact, shared.exact_what
        self.starts, self.max_ends = shared.union.starts, shared.union.max_ends
        local = IntervalTable(
            (start, end, None)
            for table in (own, allowed)
            for start, end in zip(table.starts, table.ends, strict=True)
        )
        self.local_starts, self.local_max_ends = local.starts, local.max_ends

    def why(self, value: str, lo: int, hi: int) -> str | None:
        for table, what in self.categories:
            row = table.first_overlap(lo, hi)
            if row is not None:
                entry, said = row[2] if what is None else (row[2], what)
                return _said(value, _relation(lo, hi, row), entry, said)
        return None


@dataclass(frozen=True)
class _SharedFamily:
    specials: Category
    majors: Category  # major resolvers: an IOC overlapping one is refused
    exact: dict[tuple[int, int], str]  # listed resolvers: an IOC equal to one is refused
    exact_what: str
    union: IntervalTable[None]  # specials and majors


@functools.cache
def _shared_families() -> dict[int, _SharedFamily]:
    """The built-in tables of both families, once per process (the exact-match resolvers are ~63k)."""
    data = never_block_data()
    specials: dict[int, list[tuple[int, int, tuple[str, str]]]] = {4: [], 6: []}
    for text, what in SPECIAL_RANGES:
        net = ipaddress.ip_network(text)
        specials[net.version].append((*network_bounds(net), (_net_text(net), what)))
    listed = {
        4: (data.major_v4, data.resolvers_v4, f"a public DNS resolver ({data.resolvers_v4_label})"),
        6: (data.major_v6, data.resolvers_v6, f"a public DNS resolver ({data.resolvers_v6_label})"),
    }
    out = {}
    for version, (major, exact, exact_what) in listed.items():
        special_table: IntervalTable[Any] = IntervalTable(specials[version])
        major_table: IntervalTable[Any] = IntervalTable(
            (start, end, (entry, f"a major public DNS resolver ({service})"))
            for start, end, (entry, service) in zip(major.starts, major.ends, major.labels, strict=True)
        )
        union: IntervalTable[None] = IntervalTable(
            (start, end, None)
            for table in (special_table, major_table)
            for start, end in zip(table.starts, table.ends, strict=True)
        )
        out[version] = _SharedFamily((special_table, None), (major_table, None), exact, exact_what, union)
    return out


class NeverBlockGuard:
    """Answers "may this indicator be blocked?" for the importer, fast enough for 1M-line feeds."""

    def __init__(self, config: GuardConfig = GuardConfig()) -> None:
        if not isinstance(config, GuardConfig):
            raise InvalidInput(f"expected a GuardConfig, got {type_name(config)}")
        self.config = config
        data = never_block_data()
        shared = _shared_families()
        own_ips: dict[int, list[Row]] = {4: [], 6: []}
        own_names: list[str] = []
        for entry in config.own_addresses:
            parsed = _parse_entry(entry, "own_addresses", own=True)
            if isinstance(parsed, str):
                own_names += [parsed] if parsed else []
            else:
                own_ips[parsed.version].append((*network_bounds(parsed), _net_text(parsed)))
        allow_ips: dict[int, list[Row]] = {4: [], 6: []}
        allow_names: list[str] = []
        for entry in config.allowlist:
            parsed = _parse_entry(entry, "allowlist", own=False)
            if isinstance(parsed, str):
                allow_names.append(parsed)
            else:
                allow_ips[parsed.version].append((*network_bounds(parsed), _net_text(parsed)))
        v4 = _Family(shared[4], IntervalTable(own_ips[4]), IntervalTable(allow_ips[4]))
        v6 = _Family(shared[6], IntervalTable(own_ips[6]), IntervalTable(allow_ips[6]))
        # IOC kind -> (refused intervals, address family, bits, is a network, broadest prefix allowed)
        self._kinds: dict[IocKind, tuple[_Family, int, int, bool, int]] = {
            IocKind.IPV4: (v4, socket.AF_INET, 32, False, 32),
            IocKind.CIDR4: (v4, socket.AF_INET, 32, True, config.max_prefix_v4),
            IocKind.IPV6: (v6, socket.AF_INET6, 128, False, 128),
            IocKind.CIDR6: (v6, socket.AF_INET6, 128, True, config.max_prefix_v6),
        }
        # Domain lookups, in the order reasons are given: each maps a name that is listed, or is a
        # parent of a listed name, to the listed name.
        self._domains: list[tuple[dict[str, str], str]] = [
            (parents_map(own_names), OWN_NAME),
            (parents_map(allow_names), ALLOWED),
            (data.suffixes, f"a public suffix, shared by every name under it ({data.suffixes_label})"),
            (data.popular, f"a popular domain ({data.popular_label})"),
        ]
        self._allowed_names = frozenset(allow_names)

    def refusal(self, ioc: IocValue) -> str | None:
        """None when the indicator may be blocked, else a one-line reason for the operator."""
        kind = ioc.kind
        value = ioc.value
        if kind is _DOMAIN:
            return self._domain_refusal(value)
        spec = self._kinds.get(kind)
        if spec is None or not isinstance(value, str):
            raise InvalidInput(f"IOC {show(value)} has an unknown kind {kind!r}")
        family, address_family, bits, is_net, limit = spec
        addr_text, slash, prefix_text = value.partition("/")
        try:
            lo = int.from_bytes(socket.inet_pton(address_family, addr_text), "big")
            prefix = int(prefix_text) if is_net else bits
        except (OSError, ValueError):
            raise InvalidInput(f"IOC {show(value)} is not in canonical form for kind {kind!r}") from None
        if is_net != bool(slash) or not 0 <= prefix <= bits:
            raise InvalidInput(f"IOC {show(value)} is not in canonical form for kind {kind!r}")
        if prefix == bits:
            hi = lo
        elif prefix < limit:
            return _prefix_refusal(value, 4 if bits == 32 else 6, prefix, limit)
        else:
            host = ((1 << bits) - 1) >> prefix
            if lo & host:
                raise InvalidInput(f"IOC {show(value)} has host bits set: not in canonical form")
            hi = lo | host
        i = bisect_right(family.starts, hi) - 1  # the fast "may be blocked": one bisect ...
        if i < 0 or family.max_ends[i] < lo:
            local = family.local_starts  # ... one more when this guard has own/allowed entries ...
            if local:
                i = bisect_right(local, hi) - 1
            if not local or i < 0 or family.local_max_ends[i] < lo:
                entry = family.exact.get((lo, hi))  # ... and a set lookup for listed resolvers
                return None if entry is None else _said(value, "is", entry, family.exact_what)
        return family.why(value, lo, hi)

    def _domain_refusal(self, value: str) -> str | None:
        if not isinstance(value, str) or not value.isascii() or not value.islower() or value.endswith("."):
            raise InvalidInput(f"IOC {show(value)} is not a canonical domain")
        for names, what in self._domains:
            listed = names.get(value)
            if listed is not None:
                return _said(value, "is" if listed == value else "is a parent domain of", listed, what)
        if self._allowed_names:  # a subdomain of an allow-listed name is refused too
            dot = value.find(".")
            while dot >= 0:
                parent = value[dot + 1 :]
                if parent in self._allowed_names:
                    return _said(value, "is a subdomain of", parent, ALLOWED)
                dot = value.find(".", dot + 1)
        vendor = vendor_domain(value)  # drive.google.com, login.microsoftonline.com: never a C2
        return None if vendor is None else f"refusing to block {value}: {vendor}"


def _net_text(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _prefix_refusal(value: str, version: int, prefix: int, limit: int) -> str:
    floor = MIN_PREFIX_V4 if version == 4 else MIN_PREFIX_V6
    if prefix < floor:
        return (
            f"refusing to block {value}: /{prefix} is broader than /{floor}, "
            f"the broadest IPv{version} network that may ever be blocked"
        )
    return (
        f"refusing to block {value}: /{prefix} is broader than the configured IPv{version} limit "
        f"of /{limit}; set max_prefix_v{version} to {prefix} or lower (down to {floor}) to allow it"
    )
