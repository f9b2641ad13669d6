"""The never-block guard: what it refuses, why it says so, and what it must let through."""

from __future__ import annotations

import ipaddress
import re

import pytest

from controller.domain.errors import InvalidInput
from controller.domain.ioc import IocKind, IocValue, parse_ioc
from controller.intel.guard import SPECIAL_RANGES, GuardConfig, NeverBlockGuard
from controller.intel.warninglists import (
    DATA_DIR,
    LIST_MARK,
    MAJOR_RESOLVERS_FILE,
    POPULAR_FILE,
    RESOLVERS_FILE,
    SUFFIXES_FILE,
    url_host_blockable,
    url_host_warning,
)

DOC_RANGES = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")


def ioc(text: str) -> IocValue:
    """An IocValue built directly (parse_ioc refuses some of these before the guard would see them)."""
    if ":" not in text and not text.replace(".", "").replace("/", "").isdigit():
        return IocValue(IocKind.DOMAIN, text)
    net = ipaddress.ip_network(text)  # strict: a typo in a test value must not become a domain
    if net.prefixlen == net.max_prefixlen:
        return IocValue(IocKind.IPV4 if net.version == 4 else IocKind.IPV6, str(net.network_address))
    return IocValue(IocKind.CIDR4 if net.version == 4 else IocKind.CIDR6, str(net))


@pytest.fixture(scope="module")
def guard() -> NeverBlockGuard:
    return NeverBlockGuard()


def refused(guard: NeverBlockGuard, text: str) -> str:
    reason = guard.refusal(ioc(text))
    assert reason is not None, f"{text} should be refused"
    assert reason.startswith(f"refusing to block {ioc(text).value}: ")
    assert "\n" not in reason
    return reason


# ---------------------------------------------------------------------------------------------
# Special-purpose ranges


@pytest.mark.parametrize(
    ("value", "within", "label"),
    [
        ("10.1.2.3", "10.0.0.0/8", "private range (RFC 1918)"),
        ("172.16.5.4", "172.16.0.0/12", "private range (RFC 1918)"),
        ("172.31.255.254", "172.16.0.0/12", "private range (RFC 1918)"),
        ("192.168.1.1", "192.168.0.0/16", "private range (RFC 1918)"),
        ("100.64.0.1", "100.64.0.0/10", "carrier-grade NAT"), ("127.0.0.1", "127.0.0.0/8", "loopback"),
        ("169.254.1.1", "169.254.0.0/16", "link-local"), ("224.0.0.251", "224.0.0.0/4", "multicast"),
        ("240.0.0.1", "240.0.0.0/4", "reserved"), ("0.0.0.0", "0.0.0.0/8", "'this network'"),
        ("192.0.0.8", "192.0.0.0/24", "IETF protocol assignments"),
        ("198.18.0.1", "198.18.0.0/15", "benchmarking"), ("198.19.255.1", "198.18.0.0/15", "benchmarking"),
        ("fe80::1", "fe80::/10", "link-local"), ("fd12:3456::1", "fc00::/7", "unique local"),
        ("ff02::1", "ff00::/8", "multicast"), ("100::1", "100::/64", "discard-only"),
        (str(ipaddress.IPv6Address("::ffff:192.0.2.1")), "::ffff:0:0/96", "IPv4-mapped"),
        ("64:ff9b:1::1", "64:ff9b:1::/48", "NAT64"),
    ],
)
def test_special_ranges_are_refused_and_named(guard: NeverBlockGuard, value: str, within: str, label: str):
    reason = refused(guard, value)
    assert f"it is inside {within}, " in reason
    assert label in reason


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("255.255.255.255", "it is the limited broadcast address"), ("::", "it is the unspecified address"),
        ("::1", "it is the loopback address"), ("10.0.0.0/8", "it is a private range (RFC 1918)"),
    ],
)
def test_exact_special_ranges_say_what_they_are(guard: NeverBlockGuard, value: str, label: str):
    assert refused(guard, value).endswith(label)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("172.0.0.0/8", "it contains 172.16.0.0/12, a private range (RFC 1918)"),  # IOC around the range
        ("10.20.0.0/16", "it is inside 10.0.0.0/8, a private range (RFC 1918)"),  # IOC inside it
        ("100.0.0.0/8", "it contains 100.64.0.0/10, the carrier-grade NAT range"),
        ("198.0.0.0/8", "it contains 198.18.0.0/15, the benchmarking range"),
        ("64::/16", "it contains 64:ff9b:1::/48, the local-use NAT64 range"),
        ("fd00::/16", "it is inside fc00::/7, the unique local range"),
        ("fe80::/64", "it is inside fe80::/10, the link-local range"),
    ],
)
def test_cidr_overlap_is_refused_both_ways(guard: NeverBlockGuard, value: str, expected: str):
    assert expected in refused(guard, value)


@pytest.mark.parametrize(
    "value", [*DOC_RANGES, "192.0.2.1", "198.51.100.77", "203.0.113.254", "2001:db8::1", "2001:db8:1234::/48"]
)
def test_documentation_ranges_stay_blockable(guard: NeverBlockGuard, value: str):
    assert guard.refusal(ioc(value)) is None
    assert guard.refusal(parse_ioc(value)) is None  # the importer's path: parse, then ask


def test_no_special_range_covers_a_documentation_range():
    for doc in map(ipaddress.ip_network, DOC_RANGES):
        for text, _ in SPECIAL_RANGES:
            special = ipaddress.ip_network(text)
            assert special.version != doc.version or not special.overlaps(doc), (text, str(doc))


# ---------------------------------------------------------------------------------------------
# Prefix limits


def test_default_prefix_limits(guard: NeverBlockGuard):
    assert guard.refusal(ioc("6.0.0.0/8")) is None
    assert "/7 is broader than /8" in refused(guard, "6.0.0.0/7")
    assert guard.refusal(ioc("2001:db8::/32")) is None
    assert "/15 is broader than /16" in refused(guard, "2000::/15")


def test_configured_prefix_limits():
    strict = NeverBlockGuard(GuardConfig(max_prefix_v4=16, max_prefix_v6=48))
    reason = strict.refusal(ioc("6.0.0.0/15"))
    assert reason == (
        "refusing to block 6.0.0.0/15: /15 is broader than the configured IPv4 limit of /16; "
        "set max_prefix_v4 to 15 or lower (down to 8) to allow it"
    )
    assert strict.refusal(ioc("6.0.0.0/16")) is None
    reason6 = strict.refusal(ioc("2001:db8::/32"))
    assert reason6 is not None and "configured IPv6 limit of /48; set max_prefix_v6 to 32" in reason6
    assert strict.refusal(ioc("2001:db8::/48")) is None
    assert strict.refusal(ioc("192.0.2.1")) is None  # addresses are never "too broad"


# ---------------------------------------------------------------------------------------------
# Own addresses and host names

OWN = (
    "203.0.113.5", "nats://broker.example.net:4222", "[2001:db8::53]:443", "ctl.example.org:8443", "localhost"
)


@pytest.fixture(scope="module")
def own_guard() -> NeverBlockGuard:
    return NeverBlockGuard(GuardConfig(own_addresses=OWN))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.5", "it is one of the controller's own addresses (own_addresses)"),
        ("203.0.113.0/24", "it contains 203.0.113.5, one of the controller's own addresses"),
        ("2001:db8::/64", "it contains 2001:db8::53, one of the controller's own addresses"),
        ("broker.example.net", "it is one of the controller's own host names (own_addresses)"),
        ("example.net", "a parent domain of broker.example.net, one of the controller's own host names"),
        ("ctl.example.org", "it is one of the controller's own host names"),
    ],
)
def test_own_addresses_and_host_names_are_refused(
    guard: NeverBlockGuard, own_guard: NeverBlockGuard, value: str, expected: str
):
    assert expected in refused(own_guard, value)
    assert guard.refusal(ioc(value)) is None  # only because they are ours


@pytest.mark.parametrize(
    "value", ["203.0.113.6", "203.0.113.128/25", "2001:db8:1::/48", "x.broker.example.net"]
)
def test_near_own_addresses_stay_blockable(own_guard: NeverBlockGuard, value: str):
    assert own_guard.refusal(ioc(value)) is None


# ---------------------------------------------------------------------------------------------
# The operator allow-list

ALLOW = ("198.51.100.0/25", "2001:db8:1::7", "Partner.Example.NET.")


@pytest.fixture(scope="module")
def allow_guard() -> NeverBlockGuard:
    return NeverBlockGuard(GuardConfig(allowlist=ALLOW))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("198.51.100.0/25", "it is an operator allow-list entry"),
        ("198.51.100.7", "it is inside 198.51.100.0/25, an operator allow-list entry"),
        ("198.51.100.0/24", "it contains 198.51.100.0/25, an operator allow-list entry"),
        ("2001:db8:1::/48", "it contains 2001:db8:1::7, an operator allow-list entry"),
        ("2001:db8:1::7", "it is an operator allow-list entry"),
        ("partner.example.net", "it is an operator allow-list entry"),
        ("cdn.partner.example.net", "it is a subdomain of partner.example.net, an operator allow-list entry"),
        ("a.b.partner.example.net", "it is a subdomain of partner.example.net"),
        ("example.net", "it is a parent domain of partner.example.net, an operator allow-list entry"),
    ],
)
def test_allowlist_matches_equal_sub_and_parent(
    guard: NeverBlockGuard, allow_guard: NeverBlockGuard, value: str, expected: str
):
    assert expected in refused(allow_guard, value)
    assert guard.refusal(ioc(value)) is None


def test_nested_allowlist_entries_are_all_honoured():
    """Overlapping entries in one table: the broad one must not hide behind a later, narrower one."""
    nested_entries = ("198.51.100.0/24", "198.51.100.7", "2001:db8::/48", "2001:db8::1")
    nested = NeverBlockGuard(GuardConfig(allowlist=nested_entries))
    assert "it is inside 198.51.100.0/24" in refused(nested, "198.51.100.200")
    assert "it is inside 2001:db8::/48" in refused(nested, "2001:db8::ff")
    assert "it is 198.51.100.7" not in refused(nested, "198.51.100.7")  # equal: "it is an ... entry"


@pytest.mark.parametrize(
    "value",
    ["198.51.100.200", "198.51.100.128/25", "2001:db8:1::8", "other.example.net", "notpartner.example.net",
     "partner.example.net.evil.example"],
)
def test_allowlist_neighbours_stay_blockable(allow_guard: NeverBlockGuard, value: str):
    assert allow_guard.refusal(ioc(value)) is None


# ---------------------------------------------------------------------------------------------
# Shipped warning lists


def lines(filename: str, comments: bool = False) -> list[str]:  # a data file's entries or header
    text = (DATA_DIR / filename).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and line.startswith("#") == comments]


MAJOR = dict(line.split(" ", 1) for line in lines(MAJOR_RESOLVERS_FILE))  # address -> service name
MISP_ONLY = [("190.218.118.142", "190.218.0.0/16", "v4"), ("2001:148f:fffe::1", "2001:148f::/32", "v6")]


def test_major_resolvers_are_hand_picked_and_each_refused(guard: NeverBlockGuard):
    header = lines(MAJOR_RESOLVERS_FILE, comments=True)
    assert any(line.startswith("# Source: the providers' own published resolver") for line in header)
    assert any(line.startswith("# Licence: none needed; these are facts") for line in header)
    assert len(MAJOR) == len(lines(MAJOR_RESOLVERS_FILE)) == 34  # no address twice
    assert {"8.8.8.8", "8.8.4.4", "1.1.1.1", "9.9.9.9", "208.67.222.222", "2620:fe::fe"} <= set(MAJOR)
    for address, service in MAJOR.items():
        assert str(ipaddress.ip_address(address)) == address  # canonical: messages name it as listed
        reason = refused(guard, address)
        assert reason == f"refusing to block {address}: it is a major public DNS resolver ({service})"


@pytest.mark.parametrize(
    ("network", "prefix"),
    [
        ("8.8.0.0/16", "8.8."), ("8.8.8.0/24", "8.8.8."), ("1.1.1.0/24", "1.1.1."), ("4.0.0.0/8", "4.2.2."),
        ("2001:4860::/32", "2001:4860:4860::"), ("2620:fe::/48", "2620:fe::"),
    ],
)
def test_a_network_containing_a_major_resolver_is_refused(guard: NeverBlockGuard, network: str, prefix: str):
    reason = refused(guard, network)
    assert re.search(rf"it contains {re.escape(prefix)}[0-9a-f.:]+, a major public DNS resolver \(", reason)


@pytest.mark.parametrize(("address", "network", "family"), MISP_ONLY)
def test_a_listed_resolver_is_refused_but_not_a_network_around_it(
    guard: NeverBlockGuard, own_guard: NeverBlockGuard, address: str, network: str, family: str
):
    net = ipaddress.ip_network(network)
    assert address in lines(RESOLVERS_FILE) and ipaddress.ip_address(address) in net  # the premise
    assert not any(ipaddress.ip_address(major) in net for major in MAJOR)
    said = f"refusing to block {address}: it is a public DNS resolver (MISP warning list public-dns-{family}"
    for checker in (guard, own_guard):  # own_guard: the path with a second (own/allowed) bisect
        assert checker.refusal(ioc(network)) is None
        assert checker.refusal(parse_ioc(network)) is None
        assert refused(checker, address).startswith(said)
    neighbour = str(ipaddress.ip_address(address) + 1)
    assert neighbour not in lines(RESOLVERS_FILE) and guard.refusal(ioc(neighbour)) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("google.com", "it is a popular domain (MISP warning list tranco10k v"),
        ("example.com", "it is a popular domain"),
        ("com.jm", "it is a parent domain of google.com.jm, a popular domain"),
        ("co.uk", "a public suffix, shared by every name under it (MISP warning list second-level-tlds v"),
        ("com.au", "it is a public suffix"), ("blogspot.com", "it is a public suffix"),
        ("render.com", "it is a parent domain of app.render.com, a public suffix"),
    ],
)
def test_listed_domains_and_their_parents_are_refused(guard: NeverBlockGuard, value: str, expected: str):
    assert expected in refused(guard, value)


@pytest.mark.parametrize(
    "value",
    ["evil-thing.blogspot.com", "phish.example.com", "contoso.sharepoint.com", "evil-shop.co.uk",
     "evil.example"],
)
def test_subdomains_of_listed_names_stay_blockable(guard: NeverBlockGuard, value: str):
    assert guard.refusal(ioc(value)) is None


@pytest.mark.parametrize(
    ("filename", "lists"),
    [
        (RESOLVERS_FILE, ("public-dns-v4", "public-dns-v6")),
        (POPULAR_FILE, ("tranco10k",)), (SUFFIXES_FILE, ("second-level-tlds",)),
    ],
)
def test_data_files_say_where_they_come_from(filename: str, lists: tuple[str, ...]):
    header = lines(filename, comments=True)
    assert any(line.startswith("# Source: MISP warning list") for line in header)
    assert any(line.startswith("# Licence: pymispwarninglists") for line in header)
    assert any("regenerate.py" in line for line in header)
    assert [line.split()[2] for line in header if line.startswith(LIST_MARK)] == list(lists)
    entries = lines(filename)
    assert 1000 <= len(entries) <= 100_000 and entries == sorted(set(entries))


# ---------------------------------------------------------------------------------------------
# URL hosts


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("drive.google.com", "drive.google.com is a popular or shared host (MISP warning list google v"),
        ("d111111abcdef8.cloudfront.net", "under cloudfront.net (MISP warning list lots-project v"),
        ("foo.akamaized.net", "under akamaized.net (MISP warning list tranco10k v"),
        ("bit.ly", "bit.ly is a popular or shared host (MISP warning list lots-project v"),
        ("is.gd", "is.gd is a popular or shared host (MISP warning list url-shortener v"),
        ("linktr.ee", "(MISP warning list link-in-bio v"),
        ("104.16.0.1", "104.16.0.1 is a shared address (MISP warning list cloudflare v"),
        ("[2606:4700::1]", "2606:4700::1 is a shared address (MISP warning list cloudflare v"),
    ],
)
def test_shared_url_hosts_are_not_blockable(host: str, expected: str):
    assert url_host_blockable(host) is False
    warning = url_host_warning(host)
    assert warning is not None and expected in warning


@pytest.mark.parametrize(
    "host", ["evil.example", "EVIL.example.", "cdn.evil.example", "192.0.2.10", "evil-shop.co.uk"]
)
def test_attacker_url_hosts_are_blockable(host: str):
    assert url_host_blockable(host) is True
    assert url_host_warning(host) is None


@pytest.mark.parametrize("host", ["", "localhost", "bad host.example"])
def test_unparsable_url_hosts_are_not_blockable(host: str):
    assert url_host_blockable(host) is False


# ---------------------------------------------------------------------------------------------
# Configuration and input checks


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_prefix_v4": 7}, {"max_prefix_v4": 33}, {"max_prefix_v4": True}, {"max_prefix_v4": "8"},
        {"max_prefix_v6": 15}, {"max_prefix_v6": 129},
        {"own_addresses": "203.0.113.5"},  # a bare string, not a tuple of them
        {"own_addresses": ("203.0.113.300",)}, {"allowlist": ("not a domain",)}, {"allowlist": (42,)},
        {"allowlist": ("198.51.100.7/24",)},  # host bits set
    ],
)
def test_guard_config_validation(kwargs: dict[str, object]):
    with pytest.raises(InvalidInput):
        GuardConfig(**kwargs)  # type: ignore[arg-type]


def test_guard_config_limits_and_lists_accepted():
    config = GuardConfig(max_prefix_v4=32, max_prefix_v6=128, own_addresses=["203.0.113.5"])  # type: ignore[arg-type]
    assert config.own_addresses == ("203.0.113.5",)
    assert GuardConfig(max_prefix_v4=8, max_prefix_v6=16).max_prefix_v4 == 8
    assert "configured IPv4 limit of /32" in (NeverBlockGuard(config).refusal(ioc("6.0.0.0/31")) or "")


@pytest.mark.parametrize(
    "value",
    [
        IocValue(IocKind.IPV4, "not-an-address"), IocValue(IocKind.IPV4, "192.0.2.0/24"),
        IocValue(IocKind.CIDR4, "192.0.2.0"), IocValue(IocKind.CIDR4, "192.0.2.1/24"),
        IocValue(IocKind.CIDR6, "2001:db8::1/32"), IocValue(IocKind.IPV6, "192.0.2.1"),
        IocValue(IocKind.DOMAIN, "Example.NET"),
    ],
)
def test_non_canonical_values_are_an_error(guard: NeverBlockGuard, value: IocValue):
    with pytest.raises(InvalidInput):
        guard.refusal(value)
