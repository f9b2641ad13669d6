"""Checks for every value that enters an nft document or a dnsmasq line from a policy or an IOC.

Addresses go through the C address parser (``inet_pton``, which takes nothing but an address) and
are re-rendered from the parsed bytes; domains and rule names use the controller's own rules
(mssp.common.names).
"""

from __future__ import annotations

import ipaddress
import re
import socket

from mssp.common.categories import CATEGORY_NAME_RE

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

IFNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
_DIGITS_RE = re.compile(r"[0-9]{1,3}")


def valid_category(value: object) -> bool:
    return isinstance(value, str) and CATEGORY_NAME_RE.fullmatch(value) is not None


def valid_ifname(value: object) -> bool:
    return isinstance(value, str) and IFNAME_RE.fullmatch(value) is not None


def parse_address(text: object, version: int) -> str | None:
    """The canonical text of an IPv4/IPv6 address, rendered from the parsed bytes; None if not one.

    inet_pton accepts an address and nothing else (no spaces, quotes, scope ids or trailing
    text) and is ~5x faster than ipaddress, which matters for a million IOCs.
    """
    if not isinstance(text, str) or len(text) > 45:
        return None
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        return None


def parse_cidr(text: object, version: int, min_prefix: int = 0) -> tuple[str, int] | None:
    """(network address text, prefix length) of a canonical CIDR (host bits zero), or None."""
    if not isinstance(text, str):
        return None
    addr, sep, plen = text.partition("/")
    if not sep or not _DIGITS_RE.fullmatch(plen):
        return None
    bits = 32 if version == 4 else 128
    length = int(plen)
    if not min_prefix <= length <= bits:
        return None
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    if not isinstance(addr, str) or len(addr) > 45:
        return None
    try:
        packed = socket.inet_pton(family, addr)
    except (OSError, ValueError):
        return None
    if int.from_bytes(packed, "big") & ((1 << (bits - length)) - 1):
        return None
    return socket.inet_ntop(family, packed), length
