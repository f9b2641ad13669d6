"""The fast path of parse_ioc (the shapes million-line feeds are made of) against the general path."""

from __future__ import annotations

import pytest

from controller.domain import ioc as ioc_module
from controller.domain.errors import InvalidInput
from controller.domain.ioc import IocKind, IocValue

FAST_PATH_SAMPLES = [
    "198.51.100.7", "203.0.113.0/24", "192.0.2.128/25", "0.0.0.0", "10.0.0.1", "127.0.0.1",
    "169.254.1.1", "224.0.0.1", "255.255.255.255", "192.0.2.1/8", "198.51.100.0/7", "198.51.100.7/32",
    "1.2.3.4/0", "01.2.3.4", "256.1.1.1", "1.2.3", "evil.example", "a.b.example.com", "x_y.example.net",
    "-bad.example", "bad-.example", "UPPER.example", "xn--bcher-kva.example", "example.123",
    "a" * 64 + ".example", ".".join(["a" * 63] * 4) + ".com", "e.x", "1.2.3.4.example",
]


@pytest.mark.parametrize("raw", FAST_PATH_SAMPLES)
def test_fast_path_agrees_with_the_general_path(raw: str) -> None:
    """The fast path may decline a value, but what it accepts the general path accepts the same way."""
    fast = ioc_module._fast_ioc(raw)
    try:
        general = ioc_module._parse_general(raw)
    except InvalidInput:
        assert fast is None
        return
    assert fast is None or fast == general


def test_fast_path_takes_the_common_feed_shapes() -> None:
    assert ioc_module._fast_ioc("198.51.100.7") == IocValue(IocKind.IPV4, "198.51.100.7")
    assert ioc_module._fast_ioc("203.0.113.0/24") == IocValue(IocKind.CIDR4, "203.0.113.0/24")
    assert ioc_module._fast_ioc("evil.example") == IocValue(IocKind.DOMAIN, "evil.example")
    assert ioc_module._fast_ioc("198.51.100.7/32") == IocValue(IocKind.IPV4, "198.51.100.7")
