"""Names, plans, durations and builtin categories."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.domain.categories import (
    BUILTIN_CATEGORIES,
    category_names,
    validate_category_name,
)
from controller.domain.durations import parse_duration
from controller.domain.errors import InvalidInput
from controller.domain.ioc import parse_domain
from controller.domain.names import (
    DEFAULT_PLAN,
    KNOWN_PLANS,
    show,
    validate_gateway_name,
    validate_plan,
    validate_tenant_name,
)

# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["acme", "a", "0", "acme-corp", "gw-01", "a1b2", "x" * 63, "a-b-c"])
def test_valid_names(name: str) -> None:
    assert validate_tenant_name(name) == name
    assert validate_gateway_name(name) == name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "name is empty"),
        ("Acme", "name 'Acme' must be lower-case; did you mean 'acme'?"),
        ("ACME-Corp", "did you mean 'acme-corp'?"),
        ("-acme", "must not start or end with '-'"),
        ("acme-", "must not start or end with '-'"),
        ("acme_corp", "use only lower-case letters a-z, digits and '-'"),
        ("acme corp", "use only lower-case letters"),
        ("acme.corp", "use only lower-case letters"),
        ("acme;drop", "use only lower-case letters"),
        ("acme\n", "use only lower-case letters"),
        ("acme\x00", "use only lower-case letters"),
        ("acmé", "use only lower-case letters"),
        ("../etc", "use only lower-case letters"),
        ("a.>", "use only lower-case letters"),
        ("x" * 64, "is too long (64 characters, max 63)"),
        (None, "name must be a string, got null"),
        (42, "name must be a string, got an integer"),
    ],
)
@pytest.mark.parametrize("kind", ["tenant", "gateway"])
def test_invalid_names(kind: str, name: object, expected: str) -> None:
    validate = validate_tenant_name if kind == "tenant" else validate_gateway_name
    with pytest.raises(InvalidInput) as info:
        validate(name)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(kind) or message.startswith(f"invalid {kind}")
    assert expected in message
    assert "\n" not in message and "\x00" not in message


def test_plans() -> None:
    assert DEFAULT_PLAN == "standard"
    assert set(KNOWN_PLANS) == {"standard", "pro", "enterprise"}
    assert validate_plan() == "standard"
    assert validate_plan(None) == "standard"
    for plan in KNOWN_PLANS:
        assert validate_plan(plan) == plan
    assert validate_plan(" Pro ") == "pro"


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ("gold", "unknown plan 'gold'; known plans: standard, pro, enterprise"),
        ("", "unknown plan ''"),
        ("pro;x", "unknown plan 'pro;x'"),
        (3, "plan must be a string, got an integer"),
    ],
)
def test_invalid_plans(plan: object, expected: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_plan(plan)  # type: ignore[arg-type]
    assert expected in str(info.value)


def test_show_is_one_line_and_bounded() -> None:
    assert show("a\nb") == "'a\\nb'"
    assert "\x1b" not in show("\x1b[2J")
    long = show("x" * 10_000)
    assert len(long) < 80 and long.endswith("...")


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("30m1h", timedelta(hours=1, minutes=30)),
        (" 5m ", timedelta(minutes=5)),
        ("0h5m", timedelta(minutes=5)),
        ("3650d", timedelta(days=3650)),
        ("520w", timedelta(weeks=520)),
    ],
)
def test_durations(raw: str, expected: timedelta) -> None:
    assert parse_duration(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "duration is empty"),
        ("   ", "duration is empty"),
        ("0s", "duration '0s' is zero"),
        ("0h0m", "is zero"),
        ("-5m", "duration '-5m' is negative"),
        ("5", "missing a unit after 5"),
        ("1h30", "missing a unit after 30"),
        ("5y", "unknown unit 'y' in duration '5y'; use s, m, h, d or w"),
        ("5ms", "unknown unit 'ms'"),
        ("5M", "unknown unit 'M'"),
        ("5 m", "invalid duration '5 m'"),
        ("1.5h", "invalid duration '1.5h'"),
        ("h", "invalid duration 'h'"),
        ("1h1h", "unit 'h' appears twice"),
        ("+5m", "invalid duration"),
        ("1h 30m", "invalid duration '1h 30m': use whole numbers"),
        ("5m\n1h", "invalid duration"),
        ("5m;", "invalid duration"),
        ("3651d", "longer than the maximum of 10 years"),
        ("99999999999999999999w", "longer than the maximum of 10 years"),
        ("522w", "longer than the maximum of 10 years"),
        ("1" * 100 + "s", "is too long"),
        (None, "duration must be a string"),
        (30, "duration must be a string"),
    ],
)
def test_duration_errors(raw: object, expected: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(raw)  # type: ignore[arg-type]
    assert expected in str(info.value)


# --- categories ---------------------------------------------------------------------------------


def test_required_categories_present() -> None:
    assert {
        "cloud_storage",
        "ai_tools",
        "file_sharing",
        "social_media",
        "remote_access",
        "crypto_mining",
    } <= category_names()
    cloud = BUILTIN_CATEGORIES["cloud_storage"]
    for domain in (
        "dropbox.com",
        "box.com",
        "drive.google.com",
        "onedrive.live.com",
        "mega.nz",
        "wetransfer.com",
    ):
        assert domain in cloud
    assert len(cloud) >= 15
    ai = BUILTIN_CATEGORIES["ai_tools"]
    for domain in (
        "openai.com",
        "chatgpt.com",
        "claude.ai",
        "anthropic.com",
        "gemini.google.com",
        "perplexity.ai",
    ):
        assert domain in ai
    assert {"anydesk.com", "teamviewer.com"} <= set(BUILTIN_CATEGORIES["remote_access"])


@pytest.mark.parametrize("name", sorted(BUILTIN_CATEGORIES))
def test_builtin_lists_are_canonical(name: str) -> None:
    assert validate_category_name(name) == name
    domains = BUILTIN_CATEGORIES[name]
    assert isinstance(domains, tuple) and domains
    assert len(set(domains)) == len(domains), "duplicate domain"
    for domain in domains:
        assert parse_domain(domain) == domain


def test_category_names_is_a_fresh_set() -> None:
    names = category_names()
    names.add("mine")
    assert "mine" not in category_names()


@pytest.mark.parametrize("name", ["", "AI", "1abc", "a-b", "a b", "a" * 33, "x;y"])
def test_invalid_category_names(name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid category name"):
        validate_category_name(name)
