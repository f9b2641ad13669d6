"""Parsers for single policy values (networks, domains, categories, rule names, ports, sizes).

Each returns the canonical form or raises ValueError, the only exception pydantic collects,
with a message that names the offending value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

from controller.domain.categories import validate_category_name
from controller.domain.errors import InvalidInput
from controller.domain.ioc import canonical_network, parse_domain
from controller.domain.names import show, type_name
from mssp.common.names import RULE_NAME_HELP, RULE_NAME_RE

MAX_BYTES_PER_DAY = 10**15  # 1 PB: anything above is a typo, not a threshold

_BYTE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE_RE = re.compile(r"(\d{1,20}(?:\.\d{1,20})?)\s?([A-Za-z]{0,3})")
_PORT_RE = re.compile(r"(\d{1,6})(?:-(\d{1,6}))?")

_T = TypeVar("_T")


def _domain_errors(fn: Callable[[Any], _T]) -> Callable[[Any], _T]:
    """Pydantic only collects ValueErrors; domain validators raise InvalidInput."""

    @functools.wraps(fn)
    def wrapper(value: Any) -> _T:
        try:
            return fn(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    return wrapper


def _expect_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what} as a string, got {type_name(value)}")
    return value


def _expect_int_or_str(value: Any, what: str) -> int | str:
    """YAML booleans are ints to Python; they are refused here rather than read as 0/1."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected {what}, got {type_name(value)}")
    return value


@_domain_errors
def to_network(value: Any) -> str:
    return canonical_network(_expect_str(value, "a network like 203.0.113.0/24"))


@_domain_errors
def to_domain(value: Any) -> str:
    return parse_domain(_expect_str(value, "a domain"))


@_domain_errors
def to_category(value: Any) -> str:
    return validate_category_name(value)


def to_rule_name(value: Any) -> Any:
    if value is None:
        return None
    name = _expect_str(value, "a rule name")
    if not RULE_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid rule name {show(name)}: use {RULE_NAME_HELP}")
    return name


def to_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    return port


def _check_port_range(first: int, last: int, reversed_hint: str = "") -> None:
    _check_port(first)
    _check_port(last)
    if first > last:
        raise ValueError(f"port range {first}-{last} is reversed{reversed_hint}")


class PortRange(BaseModel):
    """Inclusive destination port range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: int
    last: int

    @model_validator(mode="after")
    def _check(self) -> PortRange:
        _check_port_range(self.first, self.last)
        return self


def to_port_range(value: Any) -> Any:
    """``443``, ``"443"`` or ``"8000-8100"``; a mapping (from model_dump) is left to the model."""
    if isinstance(value, PortRange | dict):
        return value
    value = _expect_int_or_str(value, "a port number or a range like '8000-8100'")
    if isinstance(value, int):
        return PortRange(first=_check_port(value), last=value)
    match = _PORT_RE.fullmatch(value)
    if not match:
        raise ValueError(f"invalid port {show(value)}: use a number 1-65535 or a range like '8000-8100'")
    first = int(match[1])
    last = int(match[2]) if match[2] else first
    _check_port_range(first, last, " (first port must not exceed the last)")
    return PortRange(first=first, last=last)


def parse_byte_size(value: Any) -> int:
    """``500MB`` (decimal units), ``2GiB`` (binary units) or a plain byte count; must be positive."""
    value = _expect_int_or_str(value, "a size like '500MB'")
    if isinstance(value, int):
        amount = Decimal(value)
    else:
        match = _SIZE_RE.fullmatch(value.strip())
        unit = match[2].upper() if match else ""
        if not match or unit not in _BYTE_UNITS:
            raise ValueError(
                f"invalid size {show(value)}: use a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
            )
        try:
            amount = Decimal(match[1]) * _BYTE_UNITS[unit]
        except InvalidOperation:
            raise ValueError(f"invalid size {show(value)}") from None
    size = int(amount)
    if size <= 0:
        raise ValueError(f"size {show(value)} must be at least 1 byte")
    if size > MAX_BYTES_PER_DAY:
        raise ValueError(f"size {show(value)} is larger than the 1PB maximum")
    return size
