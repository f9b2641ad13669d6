"""libnftables-JSON building blocks for the agent's table: commands, matches, statements, elements.

The document is data, never nft syntax pasted from strings; every command is scoped to
``inet mssp``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from gateway_agent.nft import FAMILY, TABLE
from gateway_agent.nft.names import MARKER_KEY, MARKER_SET
from gateway_agent.nft.timeouts import timeout_seconds
from gateway_agent.nft.validate import Network

Json = dict[str, Any]

T = {"family": FAMILY, "table": TABLE}


def payload(protocol: str, field_name: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field_name}}


def match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def meta(key: str) -> Json:
    return {"meta": {"key": key}}


def ct(key: str) -> Json:
    return {"ct": {"key": key}}


def update(set_name: str, elem: Any) -> Json:
    return {"set": {"op": "update", "elem": elem, "set": f"@{set_name}"}}


def saddr(version: int) -> Json:
    return payload("ip" if version == 4 else "ip6", "saddr")


def daddr(version: int) -> Json:
    return payload("ip" if version == 4 else "ip6", "daddr")


def in_set(set_name: str) -> str:
    """The right-hand side of a match against a named set."""
    return f"@{set_name}"


def mask_text(version: int, length: int) -> str:
    bits = 32 if version == 4 else 128
    value = ((1 << bits) - 1) ^ ((1 << (bits - length)) - 1)
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def add(kind: str, body: Json) -> Json:
    return {"add": {kind: {**T, **body}}}


def rule(chain: str, expr: list[Json], comment: str | None = None) -> Json:
    body: Json = {"chain": chain, "expr": expr}
    if comment:
        body["comment"] = comment
    return add("rule", body)


def nft_set(name: str, type_: str | list[str], *, flags: Sequence[str] = (), timeout: int = 0, size: int = 0,
            counter: bool = False) -> Json:
    body: Json = {"name": name, "type": type_}
    if flags:
        body["flags"] = list(flags)
    if timeout:
        body["timeout"] = timeout
    if size:
        body["size"] = size
    if counter:
        body["stmt"] = [{"counter": None}]
    return add("set", body)


def addr_type(version: int) -> str:
    return f"ipv{version}_addr"


def net_elem(net: Network) -> Any:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def elements(set_name: str, elems: list[Any]) -> Json:
    return add("element", {"name": set_name, "elem": elems})


def delete_elements(set_name: str, elems: list[Any]) -> Json:
    return {"delete": {"element": {**T, "name": set_name, "elem": elems}}}


def count(name: str) -> list[Json]:
    """A verdict's accounting: its named counter."""
    return [{"counter": name}]


def ioc_elem(text: str, expires_at_ms: int, now_ms: int) -> Any:
    if not expires_at_ms:
        return text
    return {"elem": {"val": text, "timeout": timeout_seconds(expires_at_ms, now_ms)}}


def marker_element(marker: str) -> Json:
    return elements(MARKER_SET, [{"elem": {"val": MARKER_KEY, "comment": marker}}])
