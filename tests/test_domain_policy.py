"""Policy YAML: canonical model, bundle contents, data validation, byte sizes (mistakes: in
test_policy_errors.py)."""

from __future__ import annotations

import pytest

from controller.domain.categories import BUILTIN_CATEGORIES
from controller.domain.errors import InvalidInput
from controller.domain.policy.bundle import policy_to_bundle
from controller.domain.policy.fields import PortRange, parse_byte_size
from controller.domain.policy.model import Policy, Rule
from controller.domain.policy.validation import validate_policy
from controller.domain.policy.yaml_reader import DEFAULT_POLICY_YAML, parse_policy_yaml
from mssp.v1 import common_pb2
from tests.support.policy_docs import EXAMPLE, doc, error_of


def test_example_parses() -> None:
    policy = parse_policy_yaml(EXAMPLE)
    assert policy.default_action == "allow"
    assert [r.name for r in policy.rules] == ["block-ai", "web-out"]
    web = policy.rules[1]
    assert web.action == "allow"
    assert web.cidrs == ["203.0.113.0/24", "2001:db8::/32"]
    assert web.protocol == "tcp"
    assert web.ports == [PortRange(first=443, last=443), PortRange(first=8000, last=8100)]
    assert web.domains == ["example.com"]
    assert policy.rules[0].categories == ["ai_tools"]
    assert policy.categories == {"ai_tools": ["newai.example"]}
    assert policy.upload_thresholds[0].category == "cloud_storage"
    assert policy.upload_thresholds[0].max_per_day == 500_000_000


def test_example_bundle() -> None:
    bundle = policy_to_bundle(parse_policy_yaml(EXAMPLE), 7)
    assert isinstance(bundle, common_pb2.PolicyBundle)
    assert bundle.version == 7
    assert bundle.default_action == common_pb2.ACTION_ALLOW
    assert len(bundle.rules) == 2
    ai, web = bundle.rules
    assert ai.name == "block-ai"
    assert ai.action == common_pb2.ACTION_DENY
    assert list(ai.categories) == ["ai_tools"]
    assert ai.protocol == ""
    assert web.action == common_pb2.ACTION_ALLOW
    assert list(web.cidrs) == ["203.0.113.0/24", "2001:db8::/32"]
    assert web.protocol == "tcp"
    assert [(p.first, p.last) for p in web.ports] == [(443, 443), (8000, 8100)]
    assert list(web.domains) == ["example.com"]
    # Only the policy's extensions travel; builtin lists ship with the agent.
    assert set(bundle.categories) == {"ai_tools"}
    assert list(bundle.categories["ai_tools"].domains) == ["newai.example"]
    assert [(t.category, t.bytes_per_day) for t in bundle.upload_thresholds] == [
        ("cloud_storage", 500_000_000)
    ]
    # Round-trips through the wire.
    assert common_pb2.PolicyBundle.FromString(bundle.SerializeToString()) == bundle


def test_default_policy() -> None:
    assert DEFAULT_POLICY_YAML == "default_action: allow\nrules: []\n"
    policy = parse_policy_yaml(DEFAULT_POLICY_YAML)
    assert policy.default_action == "allow"
    assert policy.rules == []
    bundle = policy_to_bundle(policy, 0)
    assert bundle.default_action == common_pb2.ACTION_ALLOW
    assert len(bundle.rules) == 0 and len(bundle.categories) == 0


def test_canonicalization() -> None:
    policy = parse_policy_yaml(
        doc(
            """\
            default_action: DENY
            rules:
              - action: Alert
                protocol: UDP
                ports: ["53", 5353, "0123"]
                cidrs: [2001:DB8:0:0::/64, 198.51.100.7/32, 198.51.100.7, "::ffff:192.0.2.0/120"]
                domains: [Bücher.Example., EXAMPLE.com, example.com]
              - action: deny
                protocol: icmp
            categories:
              my_sites: [Intranet.Example.ORG]
            upload_thresholds:
              - {category: my_sites, max_per_day: 2GiB}
              - {category: ai_tools, max_per_day: "1.5 KB"}
              - {category: file_sharing, max_per_day: 1000}
            """
        )
    )
    assert policy.default_action == "deny"
    rule = policy.rules[0]
    assert rule.action == "alert"
    assert rule.protocol == "udp"
    assert [(p.first, p.last) for p in rule.ports] == [(53, 53), (5353, 5353), (123, 123)]
    assert rule.cidrs == ["2001:db8::/64", "198.51.100.7", "192.0.2.0/24"]
    assert rule.domains == ["xn--bcher-kva.example", "example.com"]
    assert policy.categories == {"my_sites": ["intranet.example.org"]}
    assert [t.max_per_day for t in policy.upload_thresholds] == [2 * 2**30, 1500, 1000]
    bundle = policy_to_bundle(policy, 1)
    assert bundle.default_action == common_pb2.ACTION_DENY
    assert bundle.rules[0].action == common_pb2.ACTION_ALERT
    assert [r.name for r in bundle.rules] == ["rule-1", "rule-2"]
    assert bundle.rules[1].protocol == "icmp"


def test_broad_and_special_networks_are_fine_in_policy() -> None:
    policy = parse_policy_yaml(
        "default_action: deny\nrules:\n  - action: allow\n    cidrs: [0.0.0.0/0, '::/0']\n"
    )
    assert policy.rules[0].cidrs == ["0.0.0.0/0", "::/0"]


def test_yaml_1_1_surprises_do_not_become_numbers() -> None:
    # PyYAML would read 1:2:3:4:5:6:7:8 as a base-60 integer; it must stay a string.
    policy = parse_policy_yaml(
        "default_action: allow\nrules:\n  - action: deny\n    cidrs: [1:2:3:4:5:6:7:8]\n"
    )
    assert policy.rules[0].cidrs == ["1:2:3:4:5:6:7:8"]


def test_hostile_values_never_reach_the_bundle() -> None:
    hostile = [
        "evil.com; flush ruleset",
        'evil.com" }',
        "evil.com\\nserver=8.8.8.8",
        "a{b}.example",
    ]
    for value in hostile:
        text = f"default_action: allow\nrules:\n  - action: deny\n    domains: ['{value}']\n"
        assert "line 4: rules[0].domains[0]" in error_of(text)


# --- non-YAML entry point and model round trip ----------------------------------------------


def test_validate_policy_from_data_and_round_trip() -> None:
    policy = parse_policy_yaml(EXAMPLE)
    again = validate_policy(policy.model_dump())
    assert again == policy
    assert isinstance(again, Policy)
    assert policy_to_bundle(again, 2).rules == policy_to_bundle(policy, 2).rules


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"default_action": "allow", "rules": [{"action": "deny", "cidrs": ["10.0.0.1/8"]}]},
            "rules[0].cidrs[0]",
        ),
        ({"default_action": "allow", "extra": 1}, "unknown key 'extra'"),
        (
            {
                "default_action": "allow",
                "rules": [{"action": "deny", "protocol": "tcp", "ports": [{"first": 9, "last": 1}]}],
            },
            "rules[0].ports[0]: port range 9-1 is reversed",
        ),
        ([], "expected a mapping, got a list"),
    ],
)
def test_validate_policy_errors(data: object, expected: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_policy(data)
    assert expected in str(info.value)
    assert not str(info.value).startswith("line")


def test_bundle_revalidates_hand_built_policy() -> None:
    forged = Policy.model_construct(
        default_action="allow",
        rules=[
            Rule.model_construct(
                name=None,
                action="deny",
                cidrs=[],
                protocol="any",
                ports=[],
                domains=["evil.com;flush ruleset"],
                categories=[],
            )
        ],
        categories={},
        upload_thresholds=[],
    )
    with pytest.raises(InvalidInput, match=r"rules\[0\]\.domains\[0\]"):
        policy_to_bundle(forged, 1)


@pytest.mark.parametrize("version", [-1, 2**64, True, "1"])
def test_bundle_version_checked(version: object) -> None:
    with pytest.raises(InvalidInput, match="policy version"):
        policy_to_bundle(parse_policy_yaml(DEFAULT_POLICY_YAML), version)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        ("1B", 1),
        ("500MB", 500_000_000),
        ("500mb", 500_000_000),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("3MiB", 3 * 2**20),
        ("2GB", 2 * 10**9),
        ("1.5GiB", 3 * 2**29),
        ("1TB", 10**12),
        ("1 TiB", 2**40),
        ("4096", 4096),
        (4096, 4096),
    ],
)
def test_byte_sizes(raw: str | int, size: int) -> None:
    assert parse_byte_size(raw) == size


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5XB", "invalid size"),
        ("MB", "invalid size"),
        ("1e9", "invalid size"),
        ("0", "must be at least 1 byte"),
        ("0.1B", "must be at least 1 byte"),
        ("2PB", "invalid size"),
        ("2000TB", "larger than the 1PB maximum"),
        (True, "got a boolean"),
        (None, "got null"),
    ],
)
def test_byte_size_rejections(raw: object, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_byte_size(raw)
    assert expected in str(info.value)


def test_builtin_categories_usable() -> None:
    for name in BUILTIN_CATEGORIES:
        text = f"default_action: allow\nrules:\n  - action: alert\n    categories: [{name}]\n"
        assert parse_policy_yaml(text).rules[0].categories == [name]
