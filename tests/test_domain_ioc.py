"""IOC parsing is the boundary between operator/feed text and router config: canonical or refused."""

from __future__ import annotations

import re

import pytest

from controller.domain.errors import InvalidInput
from controller.domain.ioc import IocKind, IocValue, canonical_network, parse_domain, parse_ioc
from controller.domain.ioc_meta import (
    DEFAULT_CONFIDENCE,
    DEFAULT_SOURCE,
    GLOBAL_SCOPE,
    Scope,
    parse_scope,
    validate_confidence,
    validate_source,
)
from mssp.v1 import common_pb2

# Canonical output may only contain these characters: safe in nft JSON and dnsmasq config.
_SAFE_OUTPUT = re.compile(r"[a-z0-9_.:/-]+")


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        ("203.0.113.7", IocKind.IPV4, "203.0.113.7"),
        ("8.8.8.8", IocKind.IPV4, "8.8.8.8"),
        ("2001:DB8:0:0:0:0:0:1", IocKind.IPV6, "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:ff00:0042:8329", IocKind.IPV6, "2001:db8::ff00:42:8329"),
        ("2001:db8::1/128", IocKind.IPV6, "2001:db8::1"),
        ("203.0.113.9/32", IocKind.IPV4, "203.0.113.9"),
        ("203.0.113.0/24", IocKind.CIDR4, "203.0.113.0/24"),
        ("10.0.0.0/8", IocKind.CIDR4, "10.0.0.0/8"),
        ("2001:DB8::/32", IocKind.CIDR6, "2001:db8::/32"),
        ("2001::/16", IocKind.CIDR6, "2001::/16"),
        ("::ffff:198.51.100.4", IocKind.IPV4, "198.51.100.4"),
        ("::ffff:198.51.100.0/120", IocKind.CIDR4, "198.51.100.0/24"),
        ("Evil.Example.COM", IocKind.DOMAIN, "evil.example.com"),
        ("evil.example.com.", IocKind.DOMAIN, "evil.example.com"),
        ("bücher.example", IocKind.DOMAIN, "xn--bcher-kva.example"),
        ("BÜCHER.example", IocKind.DOMAIN, "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", IocKind.DOMAIN, "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.EXAMPLE", IocKind.DOMAIN, "xn--bcher-kva.example"),
        ("пример.рф", IocKind.DOMAIN, "xn--e1afmkfd.xn--p1ai"),
        ("例え.テスト", IocKind.DOMAIN, "xn--r8jz45g.xn--zckzah"),
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", IocKind.DOMAIN, "example.com"),
        ("evil。example。com", IocKind.DOMAIN, "evil.example.com"),
        ("r3---sn-abc.googlevideo.com", IocKind.DOMAIN, "r3---sn-abc.googlevideo.com"),
        ("foo_bar.blogspot.com", IocKind.DOMAIN, "foo_bar.blogspot.com"),
        ("a" * 63 + ".example", IocKind.DOMAIN, "a" * 63 + ".example"),
        ("1-2-3-4.example.net", IocKind.DOMAIN, "1-2-3-4.example.net"),
    ],
)
def test_canonical_forms(raw: str, kind: IocKind, value: str) -> None:
    ioc = parse_ioc(raw)
    assert ioc == IocValue(kind, value)
    assert str(ioc) == value
    assert _SAFE_OUTPUT.fullmatch(ioc.value)
    # Canonical form is a fixed point.
    assert parse_ioc(ioc.value) == ioc


def test_kind_numbers_match_proto() -> None:
    for kind in IocKind:
        assert common_pb2.IocType.Value(f"IOC_TYPE_{kind.name}") == kind.value


def test_max_length_domain_accepted() -> None:
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57, "com"])
    assert len(name) == 253
    assert parse_ioc(name).value == name


def _error(raw: object) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_ioc(raw)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "\r" not in message and "\x00" not in message
    return message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "IOC value is empty"),
        ("   ", "IOC value is empty"),
        ("\t\n", "IOC value is empty"),
        ("203.0.113.5/24", "203.0.113.5/24 has host bits set; did you mean 203.0.113.0/24?"),
        ("2001:db8::1/32", "2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?"),
        ("203.0.113.0/33", "prefix /33 is out of range for IPv4 (0-32)"),
        ("2001:db8::/129", "prefix /129 is out of range for IPv6 (0-128)"),
        ("203.0.113.0/", "invalid prefix length ''"),
        ("203.0.113.0/2x", "invalid prefix length '2x'"),
        ("203.0.113.0/-1", "invalid prefix length '-1'"),
        ("203.0.113.0/24/24", "invalid prefix length '24/24'"),
        ("256.1.1.1", "is not a valid IPv4 address"),
        ("1.2.3", "is not a valid IPv4 address"),
        ("1.2.3.4.5", "is not a valid IPv4 address"),
        ("01.2.3.4", "is not a valid IPv4 address"),
        ("999.0.0.0/8", "is not a valid IPv4 address"),
        ("2001:db8:::1", "is not a valid IPv6 address"),
        ("1:2:3:4:5:6:7:8:9", "is not a valid IPv6 address"),
        ("2001:db8::g", "is not a valid IPv6 address"),
        ("fe80::1%eth0", "IPv6 zone ids"),
        ("2001:db8::1%x;y", "IPv6 zone ids"),
        ("0.0.0.0/0", "refusing to block 0.0.0.0/0: that is all of the IPv4 internet"),
        ("96.0.0.0/3", "refusing to block 96.0.0.0/3: that is 1/8 of the IPv4 internet (use /8 or longer)"),
        ("10.0.0.0/7", "1/128 of the IPv4 internet"),
        ("::/0", "all of the IPv6 address space"),
        ("2000::/3", "refusing to block 2000::/3: that is 1/8 of the IPv6 address space (use /16 or longer)"),
        ("2000::/15", "1/32768 of the IPv6 address space"),
        ("127.0.0.1", "refusing to block 127.0.0.1: it is a loopback address"),
        ("127.0.0.0/8", "overlaps the loopback range 127.0.0.0/8"),
        ("127.1.2.0/24", "overlaps the loopback range"),
        ("::1", "refusing to block ::1: it is a loopback address"),
        ("0.0.0.0", "it is an unspecified ('this network') address"),
        ("0.0.0.0/8", "overlaps the unspecified ('this network') range"),
        ("::", "refusing to block ::: it is an unspecified address"),
        ("224.0.0.251", "it is a multicast address"),
        ("239.255.255.250", "it is a multicast address"),
        ("224.0.0.0/8", "overlaps the multicast range 224.0.0.0/4"),
        ("ff02::1", "it is a multicast address"),
        ("ff00::/16", "overlaps the multicast range ff00::/8"),
        ("169.254.169.254", "it is a link-local address"),
        ("169.254.0.0/16", "overlaps the link-local range"),
        ("fe80::1", "it is a link-local address"),
        ("fe80::/16", "overlaps the link-local range fe80::/10"),
        ("255.255.255.255", "it is a limited broadcast address"),
        ("::ffff:127.0.0.1", "refusing to block 127.0.0.1: it is a loopback address"),
        ("localhost", "single-label name 'localhost' is not an enforceable domain"),
        ("com", "single-label name"),
        (
            "*.evil.com",
            "wildcards are not allowed in domain '*.evil.com'; 'evil.com' already covers its subdomains",
        ),
        ("evil.*.com", "wildcards are not allowed"),
        ("*", "wildcards are not allowed"),
        (
            "http://evil.com/payload",
            "is a URL; URLs are not enforceable IOCs; block the domain or address 'evil.com'",
        ),
        (
            "https://203.0.113.9:8443/x",
            "URLs are not enforceable IOCs; block the domain or address '203.0.113.9'",
        ),
        ("hxxp://evil.com", "URLs are not enforceable IOCs"),
        ("ftp://evil.com", "URLs are not enforceable IOCs"),
        ("evil.com/login.php", "looks like a URL or path; URLs are not enforceable IOCs"),
        ("evil.com:443", "includes a port; IOCs are addresses or domains, use 'evil.com'"),
        ("203.0.113.9:80", "includes a port; IOCs are addresses or domains, use '203.0.113.9'"),
        ("user@evil.com", "looks like an e-mail address"),
        ("evil[.]com", "looks defanged"),
        ("203.0.113.1-203.0.113.9", "address ranges are not supported"),
        ("d41d8cd98f00b204e9800998ecf8427e", "looks like a file hash"),
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "looks like a file hash"),
        ("a" * 64 + ".example", "has a label of 64 characters (max 63)"),
        (".".join(["a" * 63] * 4) + ".com", "is too long (259 characters, max 253)"),
        ("x" * 2000, "IOC value is too long (2000 characters, max 1024)"),
        ("a..example", "has an empty label"),
        (".example.com", "has an empty label"),
        ("example.com..", "has an empty label"),
        ("-evil.com", "must not start or end with '-'"),
        ("evil-.com", "must not start or end with '-'"),
        ("ev!l.com", "label 'ev!l' has invalid characters"),
        ("example.123", "numeric top-level label"),
        ("example.c0m", "top-level label 'c0m' must be letters"),
        ("example.c", "top-level label 'c' must be letters"),
        ("xn--zzzz-.example", "must not start or end with '-'"),
        ("xn--a.example", "not a valid IDNA A-label"),
        ("xn--bcher-kva-zz.example", "not a valid IDNA A-label"),
        ("\U0001f4a9.example", "not a valid internationalized (IDNA) label"),
        ("xn--ls8h.example", "not a valid internationalized (IDNA) label ('\\U0001f4a9' is not allowed)"),
        ("[2001:db8::1]", "write IPv6 addresses without brackets"),
        ("evil.com:http", "is not a valid IPv6 address"),
    ],
)
def test_rejections(raw: str, expected: str) -> None:
    assert expected in _error(raw)


@pytest.mark.parametrize(
    "raw",
    [
        'evil.com"',
        "evil.com'",
        "evil.com;reboot",
        "evil.com; rm -rf /",
        "evil.com\nserver=/x/1.2.3.4",
        "evil.com\r",
        "evil.com\x00",
        "\x00",
        "evil{}.com",
        "evil.com}",
        "ev`il`.com",
        "$(reboot).com",
        "evil\\.com",
        "evil.com#",
        "e vil.com",
        "evil.com\u200b",
        "evil\u200d.com",
        "evil\u202e.com",
        "evil\u2028.com",
        "evil\ufeff.com",
        "\x1b[31mred.com",
        "evil.com,bad.com",
        "evil.com|x",
        "<evil>.com",
        "ev\u00a0il.com",
        "ev\u3000il.com",
        "evil\uff1b.com",  # full-width semicolon, NFKC maps it to ';'
        "evil\ufe5b.com",  # small left curly bracket, NFKC maps it to '{'
        "\ud800.com",
        "1.2.3.4 ",
        " 1.2.3.4",
        "203.0.113.0/24\n",
        "2001:db8::1\t",
    ],
)
def test_hostile_strings_rejected(raw: str) -> None:
    message = _error(raw)
    assert len(message) < 400
    # The offending text is quoted/escaped, never echoed raw.
    for bad in ("\n", "\r", "\x00", "\x1b", "\u202e", "\u2028"):
        assert bad not in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ex\u0000ample.com", "contains whitespace or a control character ('\\x00' at position 2)"),
        ("a b.com", "contains whitespace or a control character (' ' at position 1)"),
        ("evil.com\n", "contains whitespace or a control character ('\\n' at position 8)"),
        ("a\u200bb.com", "'\\u200b' at position 1"),
    ],
)
def test_control_character_message_names_position(raw: str, expected: str) -> None:
    assert expected in _error(raw)


@pytest.mark.parametrize("raw", [None, 42, b"evil.com", ["evil.com"], 1.5])
def test_non_string_input(raw: object) -> None:
    assert "must be a string" in _error(raw)


def test_long_values_are_truncated_in_messages() -> None:
    message = _error("a" * 300 + ".com;")
    assert len(message) < 250
    assert "..." in message


def test_parse_domain_standalone() -> None:
    assert parse_domain("Bücher.Example.") == "xn--bcher-kva.example"
    with pytest.raises(InvalidInput, match="single-label"):
        parse_domain("intranet")
    with pytest.raises(InvalidInput, match="invalid characters"):
        parse_domain("1.2.3.4:80.com")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::/0", "::/0"),
        ("127.0.0.0/8", "127.0.0.0/8"),
        ("203.0.113.7/32", "203.0.113.7"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("203.0.113.7", "203.0.113.7"),
    ],
)
def test_canonical_network_allows_broad_and_special(raw: str, value: str) -> None:
    assert canonical_network(raw) == value


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("203.0.113.5/24", "did you mean 203.0.113.0/24?"),
        ("10.0.0.0/40", "out of range for IPv4"),
        ("example.com", "is not an IP address or CIDR network"),
        ("10.0.0.0/8;", "invalid prefix length"),
        ("", "network is empty"),
        ("fe80::1%lan", "zone ids"),
    ],
)
def test_canonical_network_rejections(raw: str, expected: str) -> None:
    with pytest.raises(InvalidInput) as info:
        canonical_network(raw)
    assert expected in str(info.value)


# --- confidence, source -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, DEFAULT_CONFIDENCE, 100])
def test_confidence_ok(value: int) -> None:
    assert validate_confidence(value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "confidence -1 is out of range 0-100"),
        (101, "confidence 101 is out of range 0-100"),
        (True, "must be an integer 0-100, got a boolean"),
        ("80", "must be an integer 0-100, got a string"),
        (80.0, "must be an integer 0-100, got a number"),
        (None, "got null"),
    ],
)
def test_confidence_rejected(value: object, expected: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_confidence(value)  # type: ignore[arg-type]
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        (None, DEFAULT_SOURCE),
        ("operator", "operator"),
        ("abuse.ch:feodo", "abuse.ch:feodo"),
        ("analyst@mssp-1/case 42", "analyst@mssp-1/case 42"),
        ("  misp  ", "misp"),
        ("x" * 64, "x" * 64),
    ],
)
def test_source_ok(value: str | None, canonical: str) -> None:
    assert DEFAULT_SOURCE == "operator"
    assert validate_source(value) == canonical


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "source is empty"),
        ("   ", "source is empty"),
        ("x" * 65, "too long (65 characters, max 64)"),
        ("feed\nname", "invalid characters"),
        ("feed;drop", "invalid characters"),
        ('feed"', "invalid characters"),
        ("fëed", "invalid characters"),
        ("feed\x00", "invalid characters"),
        (7, "source must be a string"),
    ],
)
def test_source_rejected(value: object, expected: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_source(value)  # type: ignore[arg-type]
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


# --- scope ------------------------------------------------------------------------------------


def test_scope_round_trip() -> None:
    assert parse_scope("global") == GLOBAL_SCOPE == Scope(None)
    assert parse_scope("global").tenant is None
    assert str(parse_scope("global")) == "global"
    acme = parse_scope("tenant:acme-corp")
    assert acme == Scope("acme-corp")
    assert acme.tenant == "acme-corp"
    assert str(acme) == "tenant:acme-corp"
    assert parse_scope(str(acme)) == acme
    assert parse_scope("alliance").alliance and str(parse_scope("alliance")) == "alliance"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "invalid scope ''"),
        ("Global", "use 'global', 'alliance' or 'tenant:NAME'"),
        ("Alliance", "use 'global', 'alliance' or 'tenant:NAME'"),
        ("tenant:", "tenant name is empty"),
        ("tenant:Acme", "must be lower-case; did you mean 'acme'?"),
        ("tenant:acme;drop", "invalid tenant name"),
        ("tenant:-acme", "must not start or end with '-'"),
        ("tenant: acme", "invalid tenant name"),
        ("tenants:acme", "use 'global', 'alliance' or 'tenant:NAME'"),
        (None, "scope must be a string"),
    ],
)
def test_scope_rejected(raw: object, expected: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_scope(raw)  # type: ignore[arg-type]
    assert expected in str(info.value)


def test_scope_constructor_validates() -> None:
    with pytest.raises(InvalidInput, match="invalid tenant name"):
        Scope("a b")
