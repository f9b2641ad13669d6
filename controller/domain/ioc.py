"""Indicators of compromise: parsing, canonical form, scope and wire form.

Every IOC value ends up in an nftables set or a dnsmasq config line on a customer router,
so this module is a security boundary. A value leaves here only in canonical form
(dotted IPv4, compressed lower-case IPv6, ``network/prefix`` CIDR, lower-case IDNA
A-label domain) built from parsed components, never from the raw text, and anything that
would break the router if blocked (loopback, multicast, a /2 of the internet) is refused.
"""

from __future__ import annotations

import encodings.idna
import ipaddress
import re
import stringprep
import unicodedata
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit

from controller.domain.errors import InvalidInput
from controller.domain.names import show, type_name
from mssp.common.names import LABEL_RE, MAX_DOMAIN_LEN, MAX_LABEL_LEN, TLD_RE, domain_problem


class IocKind(IntEnum):
    """Enforceable IOC types; numbers equal the proto ``IocType`` values."""

    IPV4 = 1
    IPV6 = 2
    CIDR4 = 3
    CIDR6 = 4
    DOMAIN = 5


@dataclass(frozen=True)
class IocValue:
    """A parsed IOC; build it with :func:`parse_ioc` so ``value`` is canonical."""

    kind: IocKind
    value: str

    def __str__(self) -> str:
        return self.value



MAX_INPUT_LEN = 1024
MIN_PREFIX_V4 = 8
MIN_PREFIX_V6 = 16

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges that would cut the router off from itself, its LAN or the protocols it runs on.
_SPECIAL_RANGES: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("0.0.0.0/8"), "unspecified ('this network')"),
    (ipaddress.ip_network("127.0.0.0/8"), "loopback"),
    (ipaddress.ip_network("169.254.0.0/16"), "link-local"),
    (ipaddress.ip_network("224.0.0.0/4"), "multicast"),
    (ipaddress.ip_network("255.255.255.255/32"), "limited broadcast"),
    (ipaddress.ip_network("::/128"), "unspecified"),
    (ipaddress.ip_network("::1/128"), "loopback"),
    (ipaddress.ip_network("fe80::/10"), "link-local"),
    (ipaddress.ip_network("ff00::/8"), "multicast"),
)
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

# Label separators IDNA recognises (ASCII dot, ideographic and full-width dots).
_DOTS_RE = re.compile("[\u002e\u3002\uff0e\uff61]")
# LDH plus '_' (real-world hostnames and malware domains use it): the agent's rule too, see
# mssp.common.names.
_LABEL_RE = LABEL_RE
_TLD_RE = TLD_RE
_IPV4ISH_RE = re.compile(r"[0-9.]+")
_HOSTPORT_RE = re.compile(r"([^:]+):(\d{1,5})")
_HASH_RE = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[0-9a-fA-F]{128}")
_RANGE_RE = re.compile(r"[0-9.]+-[0-9.]+")
_SCHEME_RE = re.compile(r"(?:https?|hxxps?|ftp|ftps|sftp|wss?):", re.IGNORECASE)
_DEFANG_RE = re.compile(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)", re.IGNORECASE)
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}


def _check_chars(text: str, what: str) -> None:
    """Refuse whitespace, control, format (bidi, zero-width), private-use and unassigned characters."""
    for index, ch in enumerate(text):
        if ch.isspace() or unicodedata.category(ch) in _BAD_CATEGORIES:
            raise InvalidInput(
                f"{what} {show(text)} contains whitespace or a control character ({ch!a} at position {index})"
            )


def _check_text(raw: Any, what: str) -> str:
    if not isinstance(raw, str):
        raise InvalidInput(f"{what} must be a string, got {type_name(raw)}")
    if not raw or raw.isspace():
        raise InvalidInput(f"{what} is empty")
    if len(raw) > MAX_INPUT_LEN:
        raise InvalidInput(f"{what} is too long ({len(raw)} characters, max {MAX_INPUT_LEN})")
    _check_chars(raw, what)
    return raw


# ---------------------------------------------------------------------------------------------
# IP addresses and networks


def _unmap(net: IPNetwork) -> IPNetwork:
    """IPv4-mapped IPv6 (``::ffff:a.b.c.d``) never appears on the wire; enforce it as IPv4."""
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_V4_MAPPED):
        mapped = net.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def _parse_address(text: str) -> IPAddress | None:
    if "%" in text:
        return None  # ipaddress accepts IPv6 scope ids ("fe80::1%anything") and echoes them back
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_network(text: str) -> IPNetwork:
    """Parse an address or ``address/prefix`` strictly (no host bits); the single place CIDRs are read."""
    addr_text, slash, prefix_text = text.partition("/")
    addr = _parse_address(addr_text)
    if addr is None:
        if "%" in addr_text and ":" in addr_text:
            raise InvalidInput(f"{show(text)}: IPv6 zone ids ('%...') are not allowed")
        if _IPV4ISH_RE.fullmatch(addr_text):
            raise InvalidInput(f"{show(text)} is not a valid IPv4 address (four decimal octets 0-255)")
        if addr_text.startswith("[") and addr_text.endswith("]"):
            raise InvalidInput(f"{show(text)}: write IPv6 addresses without brackets")
        if ":" in addr_text:
            raise InvalidInput(f"{show(text)} is not a valid IPv6 address")
        raise InvalidInput(f"{show(text)} is not an IP address or CIDR network")
    if not slash:
        return _unmap(ipaddress.ip_network(addr))
    family = f"IPv{addr.version}"
    if not prefix_text.isascii() or not prefix_text.isdigit() or len(prefix_text) > 3:
        raise InvalidInput(f"{show(text)}: invalid prefix length {show(prefix_text)}")
    prefix = int(prefix_text)
    if prefix > addr.max_prefixlen:
        raise InvalidInput(
            f"{show(text)}: prefix /{prefix} is out of range for {family} (0-{addr.max_prefixlen})"
        )
    net = ipaddress.ip_network((addr, prefix), strict=False)
    if net.network_address != addr:
        raise InvalidInput(f"{addr}/{prefix} has host bits set; did you mean {net}?")
    return _unmap(net)


def canonical_network(raw: str) -> str:
    """Canonical text of an address or CIDR network, for policy rules.

    Unlike IOCs, policy networks may be broad or special (``allow 0.0.0.0/0`` is a valid
    rule), but syntax, prefix range and host bits are checked just as strictly.
    A full-length prefix becomes a plain address.
    """
    text = _check_text(raw, "network")
    return _net_text(_parse_network(text))


def _net_text(net: IPNetwork) -> str:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _check_enforceable(net: IPNetwork, shown: str) -> None:
    minimum = MIN_PREFIX_V4 if net.version == 4 else MIN_PREFIX_V6
    if net.prefixlen < minimum:
        space = "IPv4 internet" if net.version == 4 else "IPv6 address space"
        share = f"all of the {space}" if net.prefixlen == 0 else f"1/{2**net.prefixlen} of the {space}"
        raise InvalidInput(f"refusing to block {shown}: that is {share} (use /{minimum} or longer)")
    for special, label in _SPECIAL_RANGES:
        if special.version != net.version or not net.overlaps(special):
            continue
        if net.prefixlen == net.max_prefixlen:
            raise InvalidInput(
                f"refusing to block {shown}: it is {_a(label)} address and blocking it would break the router"
            )
        raise InvalidInput(
            f"refusing to block {shown}: it overlaps the {label} range {special}, "
            "and blocking that would break the router"
        )


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _ip_ioc(net: IPNetwork) -> IocValue:
    text = _net_text(net)
    _check_enforceable(net, text)
    if net.prefixlen == net.max_prefixlen:
        return IocValue(IocKind.IPV4 if net.version == 4 else IocKind.IPV6, text)
    return IocValue(IocKind.CIDR4 if net.version == 4 else IocKind.CIDR6, text)


# ---------------------------------------------------------------------------------------------
# Domains


def _check_assigned(ulabel: str, label: str, name: str) -> None:
    """IDNA for stored strings (RFC 3490 AllowUnassigned=false): no code points unknown to IDNA (emoji...)."""
    for ch in ulabel:
        if stringprep.in_table_a1(ch):
            raise InvalidInput(
                f"domain {show(name)}: label {show(label)} is not a valid internationalized (IDNA) label "
                f"({ch!a} is not allowed)"
            )


def _label_to_ascii(label: str, name: str) -> str:
    if label.isascii():
        ascii_label = label.lower()
    else:
        _check_assigned(label, label, name)
        try:
            ascii_label = encodings.idna.ToASCII(label).decode("ascii").lower()
        except UnicodeError:
            raise InvalidInput(
                f"domain {show(name)}: label {show(label)} is not a valid internationalized (IDNA) label"
            ) from None
    if len(ascii_label) > MAX_LABEL_LEN:
        raise InvalidInput(
            f"domain {show(name)} has a label of {len(ascii_label)} characters (max {MAX_LABEL_LEN})"
        )
    if not _LABEL_RE.fullmatch(ascii_label):
        if ascii_label.startswith("-") or ascii_label.endswith("-"):
            raise InvalidInput(f"domain {show(name)}: label {show(label)} must not start or end with '-'")
        raise InvalidInput(
            f"domain {show(name)}: label {show(label)} has invalid characters "
            "(allowed: letters, digits, '-', '_', or IDNA unicode)"
        )
    if ascii_label.startswith("xn--"):
        # An A-label must decode and re-encode to itself, or two spellings could name one domain.
        try:
            ulabel = encodings.idna.ToUnicode(ascii_label)
            again = encodings.idna.ToASCII(ulabel).decode("ascii").lower()
        except UnicodeError:
            again = ""
        else:
            _check_assigned(ulabel, label, name)
        if again != ascii_label:
            raise InvalidInput(
                f"domain {show(name)}: label {show(label)} is not a valid IDNA A-label (punycode)"
            )
    return ascii_label


def parse_domain(raw: str) -> str:
    """Canonical domain: lower-case IDNA A-labels, no trailing dot, at least two labels.

    A domain also matches its subdomains on the router (dnsmasq semantics), which is why
    wildcards are neither needed nor accepted.
    """
    text = _check_text(raw, "domain")
    if "*" in text:
        rest = text.lstrip("*.")
        hint = f"; {show(rest)} already covers its subdomains" if rest else ""
        raise InvalidInput(f"wildcards are not allowed in domain {show(text)}{hint}")
    if _DEFANG_RE.search(text):
        raise InvalidInput(f"domain {show(text)} looks defanged; write it with plain dots")
    name = text[:-1] if _DOTS_RE.fullmatch(text[-1]) and len(text) > 1 else text
    labels = _DOTS_RE.split(name)
    if len(labels) == 1:
        raise InvalidInput(
            f"single-label name {show(text)} is not an enforceable domain; use a fully qualified name"
        )
    if any(not label for label in labels):
        raise InvalidInput(f"domain {show(text)} has an empty label (leading or doubled dot)")
    ascii_labels = [_label_to_ascii(label, text) for label in labels]
    canonical = ".".join(ascii_labels)
    if len(canonical) > MAX_DOMAIN_LEN:
        raise InvalidInput(
            f"domain {show(text)} is too long ({len(canonical)} characters, max {MAX_DOMAIN_LEN})"
        )
    tld = ascii_labels[-1]
    if not _TLD_RE.fullmatch(tld):
        if tld.isdigit():
            raise InvalidInput(
                f"{show(text)} is neither a valid IP address nor a domain (numeric top-level label)"
            )
        raise InvalidInput(
            f"domain {show(text)}: top-level label {show(tld)} must be letters or an xn-- IDN label"
        )
    problem = domain_problem(canonical)  # the agent's check: never store a name it would drop
    if problem is not None:
        raise InvalidInput(f"domain {show(text)} is not enforceable: {problem}")
    return canonical


# ---------------------------------------------------------------------------------------------
# IOC auto-detection


def _url_hint(text: str) -> str:
    try:
        host = urlsplit(text if "://" in text else "//" + text).hostname
        if host:
            return f"; block the domain or address {show(parse_ioc(host).value)} instead"
    except (InvalidInput, ValueError):
        pass
    return ""


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_FAST_V4_RE = re.compile(rf"({_OCTET}(?:\.{_OCTET}){{3}})(?:/(3[0-2]|[12]?[0-9]))?")
_FAST_DOMAIN_RE = re.compile(rf"(?:{_LABEL_RE.pattern}\.)+[a-z]{{2,63}}")
# First octets of the special IPv4 ranges below 224 (224/4 and up is multicast or broadcast).
_FAST_V4_SPECIAL_FIRST = frozenset(
    net.network_address.packed[0] for net, _ in _SPECIAL_RANGES if net.version == 4 and net.prefixlen >= 8
)


def _fast_ioc(raw: str) -> IocValue | None:
    """The shapes feeds are made of (canonical dotted IPv4 or CIDR, lower-case ASCII domains), read
    in a fraction of the general path's time; None sends anything else through the general path."""
    v4 = _FAST_V4_RE.fullmatch(raw)
    if v4 is not None:
        address, prefix_text = v4.groups()
        first = int(address[: address.index(".")])
        if first in _FAST_V4_SPECIAL_FIRST or first >= 224:
            return None  # might touch a special range (0/8, 127/8, 169.254/16, 224/4, 255.255.255.255)
        if prefix_text is None:
            return IocValue(IocKind.IPV4, address)
        prefix = int(prefix_text)
        a, b, c, d = (int(octet) for octet in address.split("."))
        if ((a << 24) | (b << 16) | (c << 8) | d) & ((1 << (32 - prefix)) - 1) or prefix < MIN_PREFIX_V4:
            return None  # host bits or too broad: the general path says why
        return IocValue(IocKind.IPV4, address) if prefix == 32 else IocValue(IocKind.CIDR4, raw)
    if len(raw) <= MAX_DOMAIN_LEN and "xn--" not in raw and _FAST_DOMAIN_RE.fullmatch(raw):
        return IocValue(IocKind.DOMAIN, raw)
    return None


def parse_ioc(raw: str) -> IocValue:
    """Detect the type of an IOC and return it in canonical form, or raise InvalidInput saying why not."""
    fast = _fast_ioc(raw) if isinstance(raw, str) else None
    return fast if fast is not None else _parse_general(raw)


def _parse_general(raw: str) -> IocValue:
    text = _check_text(raw, "IOC value")
    if "://" in text or _SCHEME_RE.match(text):
        raise InvalidInput(f"{show(text)} is a URL; URLs are not enforceable IOCs{_url_hint(text)}")
    if "@" in text:
        domain = text.rpartition("@")[2]
        raise InvalidInput(
            f"{show(text)} looks like an e-mail address, not an enforceable IOC; "
            f"block the domain {show(domain)}"
        )
    if "/" in text:
        head = text.partition("/")[0]
        if _parse_address(head) is None and not _IPV4ISH_RE.fullmatch(head) and ":" not in head:
            raise InvalidInput(
                f"{show(text)} looks like a URL or path; URLs are not enforceable IOCs{_url_hint(text)}"
            )
        return _ip_ioc(_parse_network(text))
    if _parse_address(text) is not None:
        return _ip_ioc(_parse_network(text))
    hostport = _HOSTPORT_RE.fullmatch(text)
    if hostport and "." in hostport[1]:
        raise InvalidInput(
            f"{show(text)} includes a port; IOCs are addresses or domains, use {show(hostport[1])}"
        )
    if _RANGE_RE.fullmatch(text):
        raise InvalidInput(f"{show(text)}: address ranges are not supported; use CIDR networks")
    if _IPV4ISH_RE.fullmatch(text) or ":" in text or "%" in text:
        return _ip_ioc(_parse_network(text))  # raises the specific malformed-address message
    if _HASH_RE.fullmatch(text):
        raise InvalidInput(
            f"{show(text)} looks like a file hash; hashes are kept for reporting but are not enforceable IOCs"
        )
    return IocValue(IocKind.DOMAIN, parse_domain(text))
