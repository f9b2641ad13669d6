"""STIX 2.1 bundle parser (controller/intel/parse_stix.py): patterns, validity, TLP, revocation."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.domain.errors import ControllerError
from controller.intel.entries import FeedEntry, FeedFormatError, Skipped
from controller.intel.parse_stix import TLP_MARKING_IDS, _pattern_tools, parse_stix, rfc3339_ms

BUNDLE = Path(__file__).parent / "fixtures" / "feeds" / "stix_bundle.json"
JAN_1_2024_MS = 1_704_067_200_000


def indicator(pattern: str | None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--00000000-0000-4000-8000-000000000001",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
        **extra,
    }
    if pattern is not None:
        obj["pattern"] = pattern
    return obj


def one(pattern: str, **extra: Any) -> list:
    return list(parse_stix({"type": "bundle", "objects": [indicator(pattern, **extra)]}))


def test_fixture_bundle_exactly() -> None:
    items = list(parse_stix(BUNDLE.read_text()))
    c2 = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
    until = 1_706_790_600_123  # 2024-02-01T12:30:00.123456Z, sub-millisecond digits dropped
    common = {"confidence": 85, "valid_from_ms": JAN_1_2024_MS, "valid_until_ms": until, "tlp": "green"}
    domains = "indicator--2f9a4f43-2bd4-4d5b-a0a8-4c6e7b2bb0a1"
    assert items[:6] == [
        FeedEntry(c2, "192.0.2.10", **common),
        FeedEntry(c2, "198.51.100.0/24", **common),
        FeedEntry(c2, "2001:db8::10", **common),
        FeedEntry(domains, "c2.bad.example", valid_from_ms=JAN_1_2024_MS + 500, tlp="clear"),
        FeedEntry(domains, "update.bad.example", valid_from_ms=JAN_1_2024_MS + 500, tlp="clear"),
        FeedEntry(
            "indicator--b9a1c2f0-6a0e-4a53-9c55-1d3f2e3a4b5c",
            "http://dl.bad.example/stage2.bin",
            is_url=True,
            valid_from_ms=JAN_1_2024_MS,
            tlp="amber+strict",  # from the OpenCTI-style marking-definition object in the bundle
        ),
    ]
    assert items[6] == Skipped(
        "indicator--0f3b4f1e-9d2c-4e5b-8a7f-6c5d4e3b2a19",
        "unsupported pattern: file:hashes.'SHA-256' is not a network property",
        True,
    )
    assert items[7] == Skipped(
        "indicator--4d6e8f0a-1b2c-4d3e-9f4a-5b6c7d8e9f01",
        "unsupported pattern: AND between comparisons; x509-certificate:hashes.'SHA-1' is not a network "
        "property; x509-certificate:issuer is not a network property",
        True,
    )
    # a typo'd domain is passed on as written: parse_ioc refuses it later, with its reason
    assert items[8] == FeedEntry(
        "indicator--6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d",
        "login.bad example.test",
        valid_from_ms=JAN_1_2024_MS,
    )
    assert items[9] == FeedEntry(
        "indicator--7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f",
        "203.0.113.5",
        valid_from_ms=1_685_577_600_000,
        revoked=True,
    )
    assert items[10] == Skipped(
        "indicator--9e0f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b",
        "pattern_type 'snort' is not supported (only stix)",
        True,
    )
    assert len(items) == 11  # identity, markings, malware and relationship objects yield nothing


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("[ipv4-addr:value = '192.0.2.1' AND ipv4-addr:value = '192.0.2.2']", "AND between comparisons"),
        ("[ipv4-addr:value = '192.0.2.1'] AND [domain-name:value = 'a.example']", "AND between observations"),
        ("[ipv4-addr:value = '192.0.2.1'] FOLLOWEDBY [ipv4-addr:value = '192.0.2.2']", "FOLLOWEDBY"),
        ("[ipv4-addr:value != '192.0.2.1']", "operator !="),
        ("[ipv4-addr:value NOT = '192.0.2.1']", "operator NOT ="),
        ("[ipv4-addr:value NOT IN ('192.0.2.1', '192.0.2.2')]", "operator NOT IN"),
        ("[ipv4-addr:value NOT ISSUBSET '192.0.2.0/24']", "operator NOT ISSUBSET"),
        ("[domain-name:value LIKE '%.bad.example']", "operator LIKE"),
        ("[domain-name:value MATCHES '^c2\\\\.']", "operator MATCHES"),
        ("[ipv4-addr:value ISSUPERSET '192.0.2.1']", "operator ISSUPERSET"),
        ("[ipv4-addr:value > '192.0.2.1']", "operator >"),
        ("[domain-name:value ISSUBSET 'bad.example']", "ISSUBSET on domain-name:value"),
        ("[ipv4-addr:value = '192.0.2.1'] WITHIN 300 SECONDS", "qualifier WITHIN 300 SECONDS"),
        ("[ipv4-addr:value = '192.0.2.1'] REPEATS 5 TIMES", "qualifier REPEATS 5 TIMES"),
        (
            "[ipv4-addr:value = '192.0.2.1'] START t'2024-01-01T00:00:00Z' STOP t'2024-02-01T00:00:00Z'",
            "qualifier START ... STOP",
        ),
        (
            "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
            "file:hashes.MD5 is not a network property",
        ),
        (
            "[network-traffic:dst_ref.value = '192.0.2.1']",
            "network-traffic:dst_ref.value is not a network property",
        ),
        ("[email-addr:value = 'a@bad.example']", "email-addr:value is not a network property"),
        # one unsupported comparison spoils the whole indicator, even beside supported ones
        (
            "[ipv4-addr:value = '192.0.2.1'] OR [file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
            "file:hashes.MD5 is not a network property",
        ),
    ],
)
def test_unsupported_patterns_skip_the_whole_indicator(pattern: str, reason: str) -> None:
    assert one(pattern) == [
        Skipped("indicator--00000000-0000-4000-8000-000000000001", f"unsupported pattern: {reason}", True)
    ]


@pytest.mark.parametrize(
    ("pattern", "values"),
    [
        ("[ipv4-addr:value = '192.0.2.1']", ["192.0.2.1"]),
        ("[ipv6-addr:value ISSUBSET '2001:db8::/32']", ["2001:db8::/32"]),
        (
            "[ipv4-addr:value IN ('192.0.2.1', '192.0.2.2', '198.51.100.0/24')]",
            ["192.0.2.1", "192.0.2.2", "198.51.100.0/24"],
        ),
        (
            "([ipv4-addr:value = '192.0.2.1'] OR "
            "([domain-name:value = 'a.example' OR (domain-name:value = 'b.example')]))",
            ["192.0.2.1", "a.example", "b.example"],
        ),
        ("[domain-name:value = 'it\\'s.example']", ["it's.example"]),
        ("[domain-name:value = 'back\\\\slash.example']", ["back\\slash.example"]),
    ],
)
def test_supported_patterns(pattern: str, values: list[str]) -> None:
    items = one(pattern)
    assert [item.value for item in items] == values
    assert all(isinstance(item, FeedEntry) and not item.is_url for item in items)


def test_url_values_and_missing_pattern_type() -> None:
    obj = indicator("[url:value = 'https://bad.example/login?a=1']")
    del obj["pattern_type"]  # STIX 2.0 style
    assert list(parse_stix(obj)) == [
        FeedEntry(obj["id"], "https://bad.example/login?a=1", is_url=True, valid_from_ms=JAN_1_2024_MS)
    ]


def test_parse_errors_and_missing_patterns_are_invalid_not_unsupported() -> None:
    (broken,) = one("[ipv4-addr:value = '192.0.2.1'")
    assert broken == Skipped(
        broken.where, "pattern does not parse: 1:30: mismatched input '<EOF>' expecting ']'", False
    )
    (missing,) = list(parse_stix(indicator(None)))
    assert missing == Skipped(missing.where, "indicator has no pattern", False)
    (number,) = one("[ipv4-addr:value = 3232235777]")
    assert number == Skipped(
        number.where, "invalid pattern: ipv4-addr:value = 3232235777: not a string", False
    )


def test_validity_confidence_and_their_errors() -> None:
    (entry,) = one(
        "[ipv4-addr:value = '192.0.2.1']",
        valid_from="2024-01-01T02:00:00.999999999+02:00",
        valid_until="2024-01-02T00:00:00z",
        confidence=0,
    )
    assert (entry.valid_from_ms, entry.valid_until_ms, entry.confidence) == (
        JAN_1_2024_MS + 999,
        JAN_1_2024_MS + 86_400_000,
        0,
    )
    (bad_time,) = one("[ipv4-addr:value = '192.0.2.1']", valid_until="2024-01-02")
    assert bad_time == Skipped(
        bad_time.where, "valid_until: '2024-01-02' is not an RFC 3339 timestamp", False
    )
    (bad_conf,) = one("[ipv4-addr:value = '192.0.2.1']", confidence=101)
    assert bad_conf == Skipped(bad_conf.where, "confidence '101' is not an integer 0-100", False)
    (bool_conf,) = one("[ipv4-addr:value = '192.0.2.1']", confidence=True)
    assert isinstance(bool_conf, Skipped) and not bool_conf.unsupported


def test_rfc3339_ms() -> None:
    assert rfc3339_ms("1970-01-01T00:00:00Z") == 0
    assert rfc3339_ms("2024-01-01T00:00:00.1Z") == JAN_1_2024_MS + 100
    assert rfc3339_ms("2023-12-31T19:00:00-05:00") == JAN_1_2024_MS
    for bad in ("2024-01-01", "2024-01-01T00:00:00", "2024-01-01 00:00:00Z", "yesterday"):
        with pytest.raises(ValueError, match="not an RFC 3339 timestamp"):
            rfc3339_ms(bad)


def test_revoked_marks_every_value() -> None:
    items = one("[ipv4-addr:value IN ('192.0.2.1', '192.0.2.2')]", revoked=True)
    assert [(i.value, i.revoked) for i in items] == [("192.0.2.1", True), ("192.0.2.2", True)]
    assert [i.revoked for i in one("[ipv4-addr:value = '192.0.2.1']", revoked=False)] == [False]


# The ids were checked against the STIX 2.1 schemas of stix2-validator (TLP 1.0) and the OASIS
# cti-stix-common-objects TLP 2.0 extension (marking-definition.json).
@pytest.mark.parametrize(
    ("marking", "level"),
    [
        ("marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9", "clear"),
        ("marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da", "green"),
        ("marking-definition--f88d31f6-486f-44da-b317-01333bde0b82", "amber"),
        ("marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed", "red"),
        ("marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487", "clear"),
        ("marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb", "green"),
        ("marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421", "amber"),
        ("marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003", "amber+strict"),
        ("marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1", "red"),
    ],
)
def test_well_known_tlp_markings(marking: str, level: str) -> None:
    (entry,) = one("[ipv4-addr:value = '192.0.2.1']", object_marking_refs=[marking])
    assert entry.tlp == level
    assert len(TLP_MARKING_IDS) == 9


def test_bundle_markings_and_the_strictest_wins() -> None:
    custom = "marking-definition--11111111-1111-4111-8111-111111111111"
    statement = "marking-definition--22222222-2222-4222-8222-222222222222"
    spec_style = "marking-definition--33333333-3333-4333-8333-333333333333"
    objects = [
        {"type": "marking-definition", "id": custom, "name": "TLP:GREEN"},
        {
            "type": "marking-definition",
            "id": statement,
            "definition_type": "statement",
            "definition": {"statement": "x"},
        },
        {
            "type": "marking-definition",
            "id": spec_style,
            "definition_type": "tlp",
            "definition": {"tlp": "white"},
        },
        indicator("[ipv4-addr:value = '192.0.2.1']", id="indicator--a", object_marking_refs=[custom]),
        indicator("[ipv4-addr:value = '192.0.2.2']", id="indicator--b", object_marking_refs=[statement]),
        indicator(
            "[ipv4-addr:value = '192.0.2.3']",
            id="indicator--c",
            object_marking_refs=[
                custom,
                "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
                statement,
            ],
        ),
        indicator("[ipv4-addr:value = '192.0.2.4']", id="indicator--d", object_marking_refs=[spec_style]),
    ]
    items = list(parse_stix({"type": "bundle", "id": "bundle--1", "objects": objects}))
    assert [(i.where, i.tlp) for i in items] == [
        ("indicator--a", "green"),
        ("indicator--b", None),
        ("indicator--c", "red"),
        ("indicator--d", "clear"),
    ]


def test_input_shapes() -> None:
    obj = indicator("[ipv4-addr:value = '192.0.2.1']")
    expected = [FeedEntry(obj["id"], "192.0.2.1", valid_from_ms=JAN_1_2024_MS)]
    assert list(parse_stix(obj)) == expected
    assert list(parse_stix([obj, {"type": "malware", "id": "malware--1"}])) == expected
    assert list(parse_stix(json.dumps({"type": "bundle", "objects": [obj]}).encode())) == expected
    assert list(parse_stix("\ufeff" + json.dumps(obj))) == expected
    no_id = {k: v for k, v in obj.items() if k != "id"}
    assert [i.where for i in parse_stix([{"type": "identity"}, no_id, "junk"])] == [
        "objects[1]",
        "objects[2]",
    ]
    assert list(parse_stix({"type": "bundle", "id": "bundle--1"})) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not json", "STIX feed is not JSON: Expecting value: line 1 column 1 (char 0)"),
        ('"a string"', "STIX feed must be a bundle object, got JSON str"),
        ({"type": "malware"}, "not a STIX bundle or indicator (type 'malware')"),
        ({"Event": {}}, "not a STIX bundle or indicator (type 'None')"),
        ({"type": "bundle", "objects": {"a": 1}}, "STIX bundle 'objects' must be a list"),
    ],
)
def test_not_a_bundle(data: Any, message: str) -> None:
    with pytest.raises(FeedFormatError) as err:
        list(parse_stix(data))
    assert str(err.value) == message


@pytest.fixture
def fresh_pattern_tools() -> Iterator[None]:
    """Reload the cached stix2-patterns tools around a test that fakes a broken ANTLR setup."""
    _pattern_tools.cache_clear()
    yield
    _pattern_tools.cache_clear()


def test_antlr_version_warning_is_silenced(
    fresh_pattern_tools: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from antlr4.Recognizer import Recognizer

    def noisy_check(self: object, tool_version: str) -> None:
        print(f"ANTLR runtime and generated code versions disagree: 4.99!={tool_version}")

    monkeypatch.setattr(Recognizer, "checkVersion", noisy_check)
    assert [i.value for i in one("[ipv4-addr:value = '192.0.2.1']")] == ["192.0.2.1"]
    assert capsys.readouterr().out == ""


def test_unloadable_pattern_parser_is_a_deployment_error(
    fresh_pattern_tools: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "stix2patterns.v21.pattern", None)
    with pytest.raises(
        ControllerError, match="STIX patterns cannot be parsed: stix2-patterns failed to load"
    ) as err:
        one("[ipv4-addr:value = '192.0.2.1']")
    assert not isinstance(err.value, FeedFormatError)


def test_long_or_chains_do_not_hit_the_recursion_limit() -> None:
    values = [f"198.51.100.{i % 256}" for i in range(1500)]
    inner = " OR ".join(f"ipv4-addr:value = '{v}'" for v in values)
    outer = " OR ".join(f"[domain-name:value = 'h{i}.example']" for i in range(1500))
    items = one(f"[{inner}] OR {outer}")
    assert [i.value for i in items] == values + [f"h{i}.example" for i in range(1500)]


def test_absurd_nesting_is_skipped_not_raised() -> None:
    (item,) = one("(" * 400 + "[ipv4-addr:value = '192.0.2.1']" + ")" * 400)
    assert item == Skipped(item.where, "pattern does not parse: nested too deeply", False)
