"""Warning-list data for the never-block guard, and the URL-host check built on MISP's lists.

Two kinds of data. The never-block lists (public resolvers, popular domains, public suffixes) are
text files shipped in ``controller/intel/data`` so a refusal never depends on what happens to be
installed; ``data/regenerate.py`` rebuilds them from pymispwarninglists, except the hand-picked
``major_resolvers.txt``. The shared-hosting lists
for URL hosts are read at run time from pymispwarninglists, once, on first use.
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import json
import socket
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, Generic, TypeVar

from controller.domain.errors import InvalidInput
from controller.domain.ioc import parse_domain

DATA_DIR = Path(__file__).with_name("data")
RESOLVERS_FILE = "public_resolvers.txt"
MAJOR_RESOLVERS_FILE = "major_resolvers.txt"  # hand-picked: "address-or-network service name" a line
POPULAR_FILE = "popular_domains.txt"
SUFFIXES_FILE = "public_suffixes.txt"
LIST_MARK = "# misp-list:"  # header line naming a MISP list and version a data file came from

# Hostname and string lists of popular or shared names (anyone can put content under them), picked
# by their type and description. Not dynamic-dns: a dyndns name belongs to one party. Not the public
# suffix list: a URL on evil.co.uk must still block evil.co.uk.
URL_HOST_LISTS = (  # most telling first: a message names the first list that has the name
    "google",  # string: known Google domains (".google.xx" means the domain and its subdomains)
    "microsoft",  # string: known Microsoft domains
    "microsoft-office365",  # string: Office 365 URLs
    "lots-project",  # hostname: Living Off Trusted Sites (file shares, blog, paste and app hosts)
    "url-shortener",  # hostname: URL shorteners
    "link-in-bio",  # hostname: link-in-bio pages
    "public-ipfs-gateways",  # string: public IPFS gateways
    "security-provider-blogpost",  # hostname: vendor blogs (feeds wrongly carry report URLs)
    "tranco10k",  # hostname: top 10K most-used sites
)
# CIDR lists of shared front ends, for URL hosts written as addresses. Cloud compute ranges
# (amazon-aws, google-gcp, microsoft-azure) are left out: an instance address has one tenant.
URL_ADDRESS_LISTS = ("cloudflare", "akamai", "fastly", "stackpath", "microsoft-office365-ip")

T = TypeVar("T")


class IntervalTable(Generic[T]):
    """Labelled integer intervals (possibly overlapping) answering "which one overlaps [lo, hi]".

    Sorted starts plus a running maximum of the ends make the no-overlap answer one bisect,
    which is what the importer needs for a million feed entries.
    """

    __slots__ = ("ends", "labels", "max_ends", "starts")

    def __init__(self, items: Iterable[tuple[int, int, T]]) -> None:
        rows = sorted(items, key=lambda row: (row[0], row[1]))
        self.starts = [row[0] for row in rows]
        self.ends = [row[1] for row in rows]
        self.labels = [row[2] for row in rows]
        self.max_ends = list(accumulate(self.ends, max))

    def __len__(self) -> int:
        return len(self.starts)

    def overlaps(self, lo: int, hi: int) -> bool:
        i = bisect_right(self.starts, hi) - 1
        return i >= 0 and self.max_ends[i] >= lo

    def first_overlap(self, lo: int, hi: int) -> tuple[int, int, T] | None:
        """An interval overlapping [lo, hi] as (start, end, label), or None."""
        i = bisect_right(self.starts, hi) - 1
        if i < 0 or self.max_ends[i] < lo:
            return None
        while self.ends[i] < lo:  # some earlier interval reaches lo: max_ends says so
            i -= 1
        return self.starts[i], self.ends[i], self.labels[i]


def network_bounds(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    return int(net.network_address), int(net.broadcast_address)


def parents_map(domains: Iterable[str]) -> dict[str, str]:
    """Every listed domain and each parent of it with two or more labels -> the listed domain.

    Blocking a parent blocks the listed name too (a domain IOC covers its subdomains), so a
    lookup of the IOC itself answers "equal to or parent of a listed name" in one step.
    """
    listed = list(domains)
    out: dict[str, str] = {}
    for name in listed:
        dot = name.find(".")
        while dot >= 0:
            rest = name[dot + 1 :]
            if "." not in rest:
                break
            out.setdefault(rest, name)
            dot = name.find(".", dot + 1)
    out.update((name, name) for name in listed)  # being listed outranks being a parent
    return out


# ---------------------------------------------------------------------------------------------
# The shipped never-block files


@dataclass(frozen=True)
class ShippedList:
    """One data file: its entries and the MISP list names (with versions) it was built from."""

    entries: tuple[str, ...]
    sources: tuple[str, ...]  # e.g. "public-dns-v4 v20240615"

    def label(self, only: str = "") -> str:
        """The sources for a message, e.g. "MISP warning list tranco10k v20250115"; ``only`` keeps
        the ones whose name contains it (a family's resolver list)."""
        sources = [source for source in self.sources if only in source] or list(self.sources)
        return "MISP warning list " + ", ".join(sources) if sources else "a shipped list"


def read_data_file(name: str, data_dir: Path = DATA_DIR) -> ShippedList:
    entries: list[str] = []
    sources: list[str] = []
    for line in (data_dir / name).read_text(encoding="utf-8").splitlines():
        if line.startswith(LIST_MARK):
            list_name, _, version = line[len(LIST_MARK) :].strip().partition(" ")
            sources.append(f"{list_name} v{version}" if version else list_name)
        elif line and not line.startswith("#"):
            entries.append(line.strip())
    return ShippedList(tuple(entries), tuple(sources))


@dataclass(frozen=True)
class NeverBlockData:
    """The parsed shipped lists, shared by every guard."""

    major_v4: IntervalTable[tuple[str, str]]  # (entry, service name): no IOC may contain one
    major_v6: IntervalTable[tuple[str, str]]
    resolvers_v4: dict[tuple[int, int], str]  # (first, last address) -> entry: no IOC may equal one
    resolvers_v4_label: str
    resolvers_v6: dict[tuple[int, int], str]
    resolvers_v6_label: str
    popular: dict[str, str]  # see parents_map
    popular_label: str
    suffixes: dict[str, str]
    suffixes_label: str


def _entry_bounds(text: str) -> tuple[int, int, bool]:
    """An address or network entry as (first, last address, is IPv6)."""
    if "/" in text:
        net = ipaddress.ip_network(text)
        return *network_bounds(net), net.version == 6
    is_v6 = ":" in text
    n = int.from_bytes(socket.inet_pton(socket.AF_INET6 if is_v6 else socket.AF_INET, text), "big")
    return n, n, is_v6


@functools.cache
def never_block_data() -> NeverBlockData:
    """Load the shipped files once (about 60k resolver addresses, 10k domains, 8k suffixes)."""
    resolvers = read_data_file(RESOLVERS_FILE)
    v4: dict[tuple[int, int], str] = {}
    v6: dict[tuple[int, int], str] = {}
    for text in resolvers.entries:
        lo, hi, is_v6 = _entry_bounds(text)
        (v6 if is_v6 else v4)[lo, hi] = text
    major: dict[bool, list[tuple[int, int, tuple[str, str]]]] = {False: [], True: []}
    for line in read_data_file(MAJOR_RESOLVERS_FILE).entries:
        text, _, service = line.partition(" ")
        lo, hi, is_v6 = _entry_bounds(text)
        major[is_v6].append((lo, hi, (text, service.strip() or "unnamed service")))
    popular = read_data_file(POPULAR_FILE)
    suffixes = read_data_file(SUFFIXES_FILE)
    return NeverBlockData(
        major_v4=IntervalTable(major[False]),
        major_v6=IntervalTable(major[True]),
        resolvers_v4=v4,
        resolvers_v4_label=resolvers.label("v4"),
        resolvers_v6=v6,
        resolvers_v6_label=resolvers.label("v6"),
        popular=parents_map(popular.entries),
        popular_label=popular.label(),
        suffixes=parents_map(suffixes.entries),
        suffixes_label=suffixes.label(),
    )


# ---------------------------------------------------------------------------------------------
# MISP lists at run time


@functools.cache
def misp_lists_dir() -> Path:
    """pymispwarninglists' bundled lists, found without importing the package: its import pulls in
    jsonschema and takes over a second."""
    spec = importlib.util.find_spec("pymispwarninglists")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pymispwarninglists is not installed (a controller dependency)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "misp-warninglists" / "lists"


def misp_list(name: str) -> dict[str, Any]:
    """One list.json from the installed pymispwarninglists package (name, version, type, list...)."""
    try:
        data: dict[str, Any] = json.loads((misp_lists_dir() / name / "list.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuntimeError(f"MISP warning list {name!r} is missing from pymispwarninglists") from None
    return data


def _list_domain(entry: str) -> str | None:
    """A list entry as a lookup key (".google.com" -> "google.com"), None if it cannot be a domain.

    Lookups are made with canonical names, so an ASCII entry only needs lower case and no dots
    around it (an invalid one just never matches); only IDN entries need parse_domain's A-labels.
    """
    text = entry.strip().strip(".")
    if "." not in text or "/" in text or "*" in text:
        return None
    if text.isascii():
        return text.lower()
    try:
        return parse_domain(text)
    except InvalidInput:
        return None


@dataclass(frozen=True)
class SharedHosts:
    domains: dict[str, str]  # domain -> name of the first list naming it
    v4: IntervalTable[str]
    v6: IntervalTable[str]


@functools.cache
def shared_hosts() -> SharedHosts:
    """Read the URL-host lists from pymispwarninglists, once: ~11k names, ~640 CIDRs, ~30 ms."""
    domains: dict[str, str] = {}
    for name in URL_HOST_LISTS:
        data = misp_list(name)
        label = f"{name} v{data['version']}"
        for entry in data["list"]:
            key = _list_domain(entry)
            if key is not None:
                domains.setdefault(key, label)
    v4: list[tuple[int, int, str]] = []
    v6: list[tuple[int, int, str]] = []
    for name in URL_ADDRESS_LISTS:
        data = misp_list(name)
        label = f"{name} v{data['version']}"
        for entry in data["list"]:
            try:
                net = ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                continue
            lo, hi = network_bounds(net)
            (v4 if net.version == 4 else v6).append((lo, hi, label))
    return SharedHosts(domains, IntervalTable(v4), IntervalTable(v6))


def _host_text(host: str) -> str:
    """urlsplit().hostname form: no brackets around IPv6, no port; parse_domain does the rest."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text.lower()


def url_host_warning(host: str) -> str | None:
    """Why a URL's host must not be blocked (the MISP list naming it or a parent), or None.

    Blocking the host of a URL blocks everything on it: fine for a host the attacker owns, not
    for drive.google.com, a CDN, a URL shortener or a blog platform where the URL's path is the
    only malicious part.
    """
    if not isinstance(host, str) or not host.strip():
        return "the URL has no host"
    text = _host_text(host)
    hosts = shared_hosts()
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        table = hosts.v4 if addr.version == 4 else hosts.v6
        hit = table.first_overlap(int(addr), int(addr))
        return None if hit is None else f"{text} is a shared address (MISP warning list {hit[2]})"
    try:
        name = parse_domain(text)
    except InvalidInput as exc:
        return f"the URL host is not an enforceable domain or address: {exc}"
    domains = hosts.domains
    suffix = name
    while True:
        label = domains.get(suffix)
        if label is not None:
            where = "" if suffix == name else f" under {suffix}"
            return f"{name} is a popular or shared host{where} (MISP warning list {label})"
        dot = suffix.find(".")
        if dot < 0:
            return None
        suffix = suffix[dot + 1 :]


# The vendors' own lists: a name on them serves every customer (sign-in, mail, file shares) and is
# never blocked as a domain indicator; nor is anything under the core service domains below. Other
# names on these lists (blogspot.com, sharepoint.com, azurewebsites.net...) hold customers' own
# subdomains, which attackers rent: those subdomains stay blockable.
VENDOR_LISTS = ("google", "microsoft", "microsoft-office365")
VENDOR_CORE = frozenset({
    "google.com", "googleapis.com", "gstatic.com", "gmail.com", "youtube.com", "microsoft.com",
    "microsoftonline.com", "office.com", "office365.com", "outlook.com", "live.com", "windowsupdate.com",
})


@functools.cache
def _vendor_domains() -> dict[str, str]:
    hosts = shared_hosts()
    return {name: label for name, label in hosts.domains.items() if label.split(" ")[0] in VENDOR_LISTS}


def vendor_domain(name: str) -> str | None:
    """Why blocking the canonical domain `name` would cut a vendor's service off, or None."""
    vendors = _vendor_domains()
    label = vendors.get(name)
    if label is not None:
        return f"{name} is a vendor's service domain (MISP warning list {label})"
    dot = name.find(".")
    while dot >= 0:
        parent = name[dot + 1 :]
        if parent in VENDOR_CORE:
            return f"{name} is a vendor's service domain under {parent}"
        dot = name.find(".", dot + 1)
    return None


def url_host_blockable(host: str) -> bool:
    """True when blocking the URL's host hits only the attacker: see url_host_warning."""
    return url_host_warning(host) is None
