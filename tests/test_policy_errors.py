"""Policy YAML mistakes: each one error on one line that names the YAML line and path, every mistake
listed, document-level refusals (empty, too large, alias bombs, not text)."""

from __future__ import annotations

import pytest

from controller.domain.errors import InvalidInput
from controller.domain.policy.model import MAX_RULES
from controller.domain.policy.yaml_reader import parse_policy_yaml
from tests.support.policy_docs import EXAMPLE, error_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "default_action: allow\nrules:\n  - name: a\n    action: deny\n    domains: [x.com]\n"
            "  - action: allow\n    protocol: tcp\n    ports: [443, 70000]\n",
            "line 8: rules[1].ports[1]: port 70000 is out of range 1-65535",
        ),
        (
            "default_action: allow\nrules:\n  - action: allow\n    protocol: tcp\n    ports:\n      - 22\n"
            "      - 0\n",
            "line 7: rules[0].ports[1]: port 0 is out of range 1-65535",
        ),
        (
            "default_action: allow\nrules:\n  - action: allow\n    protocol: tcp\n    ports: ['8100-8000']\n",
            "line 5: rules[0].ports[0]: port range 8100-8000 is reversed",
        ),
        (
            "default_action: allow\nrules:\n  - action: allow\n    protocol: tcp\n    ports: ['1-65536']\n",
            "line 5: rules[0].ports[0]: port 65536 is out of range 1-65535",
        ),
        (
            "default_action: allow\nrules:\n  - action: allow\n    protocol: tcp\n    ports: [0x1bb]\n",
            "line 5: rules[0].ports[0]: invalid port '0x1bb'",
        ),
        (
            "default_action: allow\nrules:\n  - action: allow\n    protocol: tcp\n    ports: [22:80]\n",
            "line 5: rules[0].ports[0]: invalid port '22:80'",
        ),
        (
            "default_action: allow\nrules:\n  - action: allow\n    protocol: tcp\n    ports: [true]\n",
            "line 5: rules[0].ports[0]: expected a port number or a range like '8000-8100', got a boolean",
        ),
        (
            "default_action: allow\nrules:\n  - action: allow\n    protocol: tcp\n    ports: [-1]\n",
            "line 5: rules[0].ports[0]: port -1 is out of range 1-65535",
        ),
        (
            "default_action: allow\nrules:\n  - action: allow\n    ports: [443]\n",
            "line 4: rules[0].ports: ports need protocol tcp or udp (protocol is 'any')",
        ),
        (
            "default_action: allow\nrules:\n  - action: allow\n    protocol: icmp\n    ports: [443]\n",
            "line 5: rules[0].ports: ports need protocol tcp or udp (protocol is 'icmp')",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    protocol: sctp\n",
            "line 4: rules[0].protocol: 'sctp' is not one of 'tcp', 'udp', 'icmp' or 'any'",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    cidrs:\n      - 10.0.0.0/8\n"
            "      - 203.0.113.5/24\n",
            "line 6: rules[0].cidrs[1]: 203.0.113.5/24 has host bits set; did you mean 203.0.113.0/24?",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    cidrs: [10.0.0.0/33]\n",
            "line 4: rules[0].cidrs[0]: '10.0.0.0/33': prefix /33 is out of range for IPv4 (0-32)",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    cidrs: [example.com]\n",
            "line 4: rules[0].cidrs[0]: 'example.com' is not an IP address or CIDR network",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    cidrs: [1:2:3:4:5:6:7:8:9]\n",
            "line 4: rules[0].cidrs[0]: '1:2:3:4:5:6:7:8:9' is not a valid IPv6 address",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    cidrs: [8080]\n",
            "line 4: rules[0].cidrs[0]: expected a network like 203.0.113.0/24 as a string, got an integer",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    cidrs: 10.0.0.0/8\n",
            "line 4: rules[0].cidrs: expected a list, got a string",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    domains: ['*.evil.com']\n",
            "line 4: rules[0].domains[0]: wildcards are not allowed in domain '*.evil.com'",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    domains: [localhost]\n",
            "line 4: rules[0].domains[0]: single-label name 'localhost'",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    domains:\n      - ok.example\n"
            "      - 'evil.com;server=/x/'\n",
            "line 6: rules[0].domains[1]: domain 'evil.com;server=/x/'",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n"
            '    domains: ["evil.com\\nserver=/x/1.2.3.4"]\n',
            "line 4: rules[0].domains[0]: domain 'evil.com\\nserver=/x/1.2.3.4' contains whitespace",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    categories: [ai_tool]\n",
            "line 4: rules[0].categories[0]: unknown category 'ai_tool'; did you mean 'ai_tools'?",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    categories: [AI_Tools]\n",
            "line 4: rules[0].categories[0]: invalid category name 'AI_Tools'",
        ),
        (
            "default_action: allow\nrules:\n  - name: a\n    action: deny\n    domains: [x.com]\n"
            "  - name: a\n    action: deny\n    domains: [y.com]\n",
            "line 6: rules[1].name: duplicate rule name 'a' (also used by rules[0])",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    domains: [x.com]\n"
            "  - name: rule-1\n    action: deny\n    domains: [y.com]\n",
            "line 5: rules[1].name: duplicate rule name 'rule-1' (also used by rules[0])",
        ),
        (
            "default_action: allow\nrules:\n  - name: 'no spaces; please'\n"
            "    action: deny\n    protocol: icmp\n",
            "line 3: rules[0].name: invalid rule name 'no spaces; please'",
        ),
        (
            "default_action: allow\nrules:\n  - name: "
            + "n" * 65
            + "\n    action: deny\n    protocol: icmp\n",
            "line 3: rules[0].name: invalid rule name",
        ),
        (
            "default_action: allow\nrules:\n  - name: catch-all\n    action: deny\n",
            "line 3: rules[0]: rule has nothing to match",
        ),
        (
            "default_action: allow\nrules:\n  - name: x\n    domains: [x.com]\n",
            "line 3: rules[0]: missing required key 'action'",
        ),
        (
            "default_action: allow\nrules:\n  - action: block\n    domains: [x.com]\n",
            "line 3: rules[0].action: 'block' is not one of 'allow', 'deny' or 'alert'",
        ),
        (
            "default_action: allow\nrules:\n  - action: deny\n    domains: [x.com]\n    acton: deny\n",
            "line 5: rules[0]: unknown key 'acton' (did you mean 'action'?)",
        ),
        (
            "default_action: allow\nrule: []\n",
            "line 2: unknown key 'rule' (did you mean 'rules'?)",
        ),
        ("rules: []\n", "line 1: missing required key 'default_action'"),
        ("default_action: alert\n", "line 1: default_action: 'alert' is not one of 'allow' or 'deny'"),
        (
            "default_action: no\n",
            "line 1: default_action: expected one of 'allow' or 'deny', got a boolean (unquoted yes/no",
        ),
        ("default_action: allow\nrules:\n", "line 2: rules: expected a list, got null"),
        ("default_action: allow\nrules: {a: 1}\n", "line 2: rules: expected a list, got a mapping"),
        ("default_action: allow\nrules: [deny]\n", "line 2: rules[0]: expected a mapping, got a string"),
        (
            "default_action: allow\ncategories:\n  ai_tools: newai.example\n",
            "line 3: categories.ai_tools: expected a list, got a string",
        ),
        (
            "default_action: allow\ncategories:\n  'Bad Name': [x.example]\n",
            "line 3: categories['Bad Name']: invalid category name 'Bad Name'",
        ),
        (
            "default_action: allow\ncategories:\n  mine:\n    - ok.example\n    - 'ev\"il.example'\n",
            "line 5: categories.mine[1]: domain 'ev\"il.example': label 'ev\"il' has invalid characters",
        ),
        (
            "default_action: allow\nupload_thresholds:\n  - category: cloud_storage\n    max_per_day: 5XB\n",
            "line 4: upload_thresholds[0].max_per_day: invalid size '5XB'",
        ),
        (
            "default_action: allow\nupload_thresholds:\n  - category: cloud_storage\n    max_per_day: 0MB\n",
            "line 4: upload_thresholds[0].max_per_day: size '0MB' must be at least 1 byte",
        ),
        (
            "default_action: allow\nupload_thresholds:\n  - category: cloud_storage\n    max_per_day: -5\n",
            "line 4: upload_thresholds[0].max_per_day: size '-5' must be at least 1 byte",
        ),
        (
            "default_action: allow\nupload_thresholds:\n  - category: cloud_storage\n    max_per_day: 2.5\n",
            "line 4: upload_thresholds[0].max_per_day: expected a size like '500MB', got a number",
        ),
        (
            "default_action: allow\nupload_thresholds:\n  - category: nope\n    max_per_day: 5MB\n",
            "line 3: upload_thresholds[0].category: unknown category 'nope'",
        ),
        (
            "default_action: allow\nupload_thresholds:\n  - {category: ai_tools, max_per_day: 1MB}\n"
            "  - {category: ai_tools, max_per_day: 2MB}\n",
            "line 4: upload_thresholds[1].category: duplicate threshold for category 'ai_tools'",
        ),
        (
            "default_action: allow\nupload_thresholds:\n  - category: ai_tools\n",
            "line 3: upload_thresholds[0]: missing required key 'max_per_day'",
        ),
    ],
)
def test_errors_name_line_and_path(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_error_message_exact_form() -> None:
    text = EXAMPLE.replace('ports: [443, "8000-8100"]', "ports: [443, 70000]")
    assert error_of(text) == "line 10: rules[1].ports[1]: port 70000 is out of range 1-65535"


def test_extension_category_usable_in_rules() -> None:
    policy = parse_policy_yaml(
        "default_action: allow\nrules:\n  - action: deny\n    categories: [my_bad_sites]\n"
        "categories:\n  my_bad_sites: [bad.example]\n"
    )
    assert policy.rules[0].categories == ["my_bad_sites"]
    assert "my_bad_sites" in policy.known_categories()


def test_several_errors_are_each_named_in_line_order() -> None:
    text = "default_action: allow\nrules:\n  - action: deny\n    cidrs: [10.0.0.1/8]\n    bogus: 1\n"
    assert error_of(text).startswith("2 problems: line 4: rules[0].cidrs[0]: 10.0.0.1/8 has host bits set; ")
    assert "line 5: rules[0]: unknown key 'bogus'" in error_of(text), error_of(text)
    with pytest.raises(InvalidInput) as exc:
        parse_policy_yaml(text)
    assert len(exc.value.problems) == 2 and exc.value.problems[0].startswith("line 4: ")


def test_too_many_rules() -> None:
    rules = "".join(f"  - action: deny\n    domains: [d{i}.example]\n" for i in range(MAX_RULES + 1))
    assert error_of("default_action: allow\nrules:\n" + rules) == (
        f"line 3: rules: too many rules ({MAX_RULES + 1}, max {MAX_RULES})"
    )
    ok = "".join(f"  - action: deny\n    domains: [d{i}.example]\n" for i in range(MAX_RULES))
    assert len(parse_policy_yaml("default_action: allow\nrules:\n" + ok).rules) == MAX_RULES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "policy document is empty"),
        ("# only a comment\n", "policy document is empty"),
        ("---\n", "policy document is empty"),
        ("- a\n- b\n", "line 1: policy must be a mapping"),
        ("just a string\n", "line 1: policy must be a mapping"),
        ("default_action: allow\nrules: [\n  - a\n", "line 3: YAML syntax error"),
        ("default_action: allow\n  rules: []\n", "line 2: YAML syntax error"),
        ("default_action: 'allow\n", "YAML syntax error"),
        ("default_action: allow\n\trules: []\n", "line 2: YAML syntax error"),
        (
            "default_action: allow\n---\ndefault_action: deny\n",
            "line 2: YAML syntax error: a policy must be a single",
        ),
        (
            "default_action: allow\ndefault_action: deny\n",
            "line 2: duplicate key 'default_action' (first on line 1)",
        ),
        ("default_action: &a allow\nrules: []\n", "line 1: YAML anchors ('&name') are not allowed"),
        ("default_action: allow\nrules: *x\n", "line 2: YAML"),
        (
            "default_action: allow\nrules:\n  - <<: {action: deny}\n",
            "line 3: YAML merge keys ('<<') are not allowed",
        ),
        ("default_action: !!python/name:os.system allow\n", "line 1: unsupported YAML tag"),
        ("default_action: !custom allow\n", "line 1: unsupported YAML tag"),
        ("default_action: !!binary aGVsbG8=\n", "line 1: unsupported YAML tag"),
        ("default_action: allow\nrules:\n  ? [a, b]\n  : c\n", "line 3: mapping keys must be plain strings"),
        ("default_action: allow\x00\n", "line 1: character U+0000 is not allowed"),
        ("default_action: allow\nrules: []\n# \x1b[31m\n", "line 3: character U+001B is not allowed"),
        ("default_action: allow\nx: " + "[" * 50 + "]" * 50 + "\n", "line 2: YAML nesting is deeper than"),
        ("[" * 200_000, "YAML nesting is deeper than"),
    ],
)
def test_document_level_errors(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_alias_bomb_rejected_fast() -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, 12):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        bomb += f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
    assert "line 1: YAML anchors" in error_of(bomb)
    assert "line 2: YAML aliases ('*name') are not allowed" in error_of(
        "default_action: allow\nrules: *nothing\n"
    )


def test_oversized_document_rejected() -> None:
    text = "default_action: allow\n" + "#" * (1 << 20)
    assert error_of(text) == "policy document is larger than 1024 KiB"
    # Size is counted in UTF-8 bytes, not characters.
    assert "larger than" in error_of("default_action: allow\n#" + "é" * 600_000)


def test_non_text_input() -> None:
    with pytest.raises(InvalidInput, match="must be text"):
        parse_policy_yaml(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not valid UTF-8"):
        parse_policy_yaml(b"\xff\xfe")  # type: ignore[arg-type]
    assert parse_policy_yaml(b"default_action: deny\n").default_action == "deny"  # type: ignore[arg-type]
