"""Per-gateway policy overrides: the merge rule (pure), the agent's choice of its own bundle, and
through msspctl against a real controller with two real agents of one tenant: an override reaches
only its gateway, a bad one names its line and changes nothing, show/unset/dry run, and a deleted
gateway's override goes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlmodel import select

from controller.domain.errors import InvalidInput
from controller.domain.policy.bundle import policy_to_bundle
from controller.domain.policy.changes import policy_yaml
from controller.domain.policy.merge import effective_policy, read_override, shadows
from controller.domain.policy.yaml_reader import parse_policy_yaml
from controller.simulation import wait_until
from controller.store.policy_models import PolicyOverride
from gateway_agent.own_policy import own_policy
from mssp.common.parts import MAX_SINGLE_PUSH_BYTES
from mssp.v1 import common_pb2
from tests.support.fleet import RunningController
from tests.support.policy_cli import async_cli, enforced, failed, ok, ok_json, rule_names, write

TENANT = """\
default_action: allow
rules:
  - name: block-ai
    action: deny
    categories: [ai_tools]
  - action: deny
    cidrs: [198.51.100.0/24]
categories:
  intranet: [intra.example.com]
  partners: [partner.example.com]
upload_thresholds:
  - category: cloud_storage
    max_per_day: 500MB
  - category: ai_tools
    max_per_day: 1GB
"""

OVERRIDE = """\
default_action: deny
rules:
  - name: branch-web
    action: allow
    cidrs: [203.0.113.0/24]
    protocol: tcp
    ports: [443]
  - action: allow
    domains: [updates.example.com]
categories:
  intranet: [branch.example.com]
upload_thresholds:
  - category: ai_tools
    max_per_day: 10MB
"""


# ---- the merge rule (pure) ---------------------------------------------------------------------


def test_merge_rule_is_key_by_key() -> None:
    merged = effective_policy(parse_policy_yaml(TENANT), read_override(OVERRIDE))
    assert merged.default_action == "deny"  # the override's replaces the tenant's
    # The override's rules first (evaluated before the tenant's); unnamed ones keep their own names.
    assert [merged.rule_name(i) for i in range(len(merged.rules))] == [
        "branch-web", "override-2", "block-ai", "rule-2"]
    # Categories per name: the override's list replaces the tenant's for that name only.
    assert merged.categories == {"partners": ["partner.example.com"], "intranet": ["branch.example.com"]}
    # Thresholds per category: the override's first, the tenant's others kept.
    assert [(t.category, t.max_per_day) for t in merged.upload_thresholds] == [
        ("ai_tools", 10_000_000), ("cloud_storage", 500_000_000)]
    assert shadows(parse_policy_yaml(TENANT), read_override(OVERRIDE)) == [
        "default_action", "rules (2 evaluated first)", "categories: intranet", "upload_thresholds: ai_tools"]


def test_partial_override_inherits_the_rest() -> None:
    tenant = parse_policy_yaml(TENANT)
    merged = effective_policy(tenant, read_override("rules:\n  - action: deny\n    cidrs: [192.0.2.0/24]\n"))
    assert merged.default_action == "allow"
    assert merged.categories == tenant.categories and merged.upload_thresholds == tenant.upload_thresholds
    # The effective document is itself a valid policy that round-trips.
    again = parse_policy_yaml(policy_yaml(merged))
    assert again.model_dump() == merged.model_copy(
        update={"rules": [r.model_copy(update={"name": merged.rule_name(i)})
                          for i, r in enumerate(merged.rules)]}).model_dump()


@pytest.mark.parametrize(("text", "needles"), [
    ("rules:\n  - name: block-ai\n    action: allow\n    cidrs: [192.0.2.0/24]\n",
     ["line 2:", "'block-ai' is also a rule of the tenant policy"]),
    ("default_action: allow\nrules:\n  - action: allow\n    protocol: tcp\n    ports: [70000]\n",
     ["line 5:", "rules[0].ports[0]", "70000"]),
    ("default_action: allow\ndefault_acton: deny\n", ["line 2:", "unknown key 'default_acton'"]),
    ("upload_thresholds:\n  - category: ai_tools\n    max_per_day: 1MB\n  - category: ai_tools\n"
     "    max_per_day: 2MB\n", ["line 4:", "duplicate threshold"]),
    ("rules:\n  - action: deny\n    categories: [no_such]\n", ["line 3:", "unknown category 'no_such'"]),
    ("{}\n", ["override document is empty"]),
    ("rules: 5\n", ["line 1:", "rules: expected a list"]),
])
def test_bad_override_names_its_line(text: str, needles: list[str]) -> None:
    with pytest.raises(InvalidInput) as exc:
        effective_policy(parse_policy_yaml(TENANT), read_override(text))
    for needle in needles:
        assert needle in str(exc.value), str(exc.value)


def test_agent_enforces_its_own_entry_else_the_tenant_bundle() -> None:
    tenant = policy_to_bundle(parse_policy_yaml(TENANT), 3)
    mine = policy_to_bundle(effective_policy(parse_policy_yaml(TENANT), read_override(OVERRIDE)), 3)
    tenant.gateways.add(gateway_id="gw-a", bundle=mine)
    assert own_policy(tenant, "gw-a") == mine
    theirs = own_policy(tenant, "gw-b")
    assert not theirs.gateways and theirs.rules == tenant.rules and theirs.version == 3
    plain = policy_to_bundle(parse_policy_yaml(TENANT), 3)
    assert own_policy(plain, "gw-b") is plain
    # An agent from before the field reads the same bytes and gets the tenant's policy.
    old = common_pb2.PolicyBundle.FromString(tenant.SerializeToString())
    assert old.default_action == common_pb2.ACTION_ALLOW


# ---- through msspctl, against a real controller and real agents ---------------------------------


async def test_override_reaches_only_its_gateway(
    controller: RunningController, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cli = async_cli(controller, monkeypatch, capsys)
    await ok(cli, "tenant", "create", "acme")
    one, two = await controller.enroll("acme", "branch-1"), await controller.enroll("acme", "branch-2")
    await wait_until(lambda: one.agent.synced.is_set() and two.agent.synced.is_set())
    await ok(cli, "policy", "set", "acme", "-f", write(tmp_path, "tenant.yaml", TENANT))
    set_ = await ok_json(cli, "policy", "set", "acme/branch-1", "-f", write(tmp_path, "o.yaml", OVERRIDE))
    assert set_["gateway"] == "branch-1" and set_["version"] == 2
    await wait_until(lambda: rule_names(enforced(one))[:1] == ["branch-web"] and enforced(two).get("rules"))
    assert enforced(one)["default_action"] == "ACTION_DENY"
    assert rule_names(enforced(one)) == ["branch-web", "override-2", "block-ai", "rule-2"]
    assert enforced(two)["default_action"] == "ACTION_ALLOW"
    assert rule_names(enforced(two)) == ["block-ai", "rule-2"]
    assert "gateways" not in enforced(one) and "gateways" not in enforced(two)

    shown = await ok(cli, "policy", "show", "acme/branch-1")
    assert "override version 2" in shown and "name: branch-web" in shown and "effective policy" in shown
    assert shown.index("effective policy") < shown.rindex("block-ai")  # the merged one holds the tenant's
    other = await ok_json(cli, "policy", "show", "acme/branch-2")
    assert other.get("yaml", "") == "" and "block-ai" in other["effective_yaml"]

    # A bad override names the override file's line and changes nothing.
    tenant_before = await ok_json(cli, "tenant", "show", "acme")
    bad = write(tmp_path, "bad.yaml", "rules:\n  - action: allow\n    protocol: tcp\n    ports: [99999]\n")
    error = await failed(cli, "policy", "set", "acme/branch-2", "-f", bad)
    assert "line 4:" in error and "99999" in error
    assert await ok_json(cli, "tenant", "show", "acme") == tenant_before
    assert (await ok_json(cli, "policy", "history", "acme/branch-2")).get("versions", []) == []
    assert "unknown gateway acme/nope" in await failed(cli, "policy", "set", "acme/nope", "-f", bad)

    # A new tenant policy reaches both; the override stays on top for branch-1.
    await ok(cli, "policy", "set", "acme", "-f", write(tmp_path, "t2.yaml", "default_action: allow\n"))
    await wait_until(lambda: rule_names(enforced(two)) == [] and rule_names(enforced(one)) == [
        "branch-web", "override-2"])
    # Unset: branch-1 enforces the tenant's policy again.
    await ok(cli, "policy", "unset", "acme/branch-1")
    await wait_until(lambda: rule_names(enforced(one)) == []
                     and enforced(one)["default_action"] == "ACTION_ALLOW")
    assert "has no policy override" in await failed(cli, "policy", "unset", "acme/branch-1")


async def test_dry_run_names_the_gateways_and_changes_nothing(
    controller: RunningController, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cli = async_cli(controller, monkeypatch, capsys)
    await ok(cli, "tenant", "create", "dry")
    for name in ("a", "b"):
        await ok(cli, "gateway", "add", f"dry/{name}")
    await ok(cli, "policy", "set", "dry", "-f", write(tmp_path, "t.yaml", TENANT))
    await ok(cli, "policy", "set", "dry/a", "-f", write(tmp_path, "o.yaml", OVERRIDE))
    before = await ok_json(cli, "tenant", "show", "dry")
    proposed = write(tmp_path, "p.yaml", TENANT.replace("default_action: allow", "default_action: deny"))
    preview = await ok_json(cli, "policy", "set", "dry", "-f", proposed, "--dry-run")
    assert preview["diff"]["from_version"] == 1 and preview["diff"]["default_after"] == "deny"
    assert "-default_action: allow" in preview["diff"]["unified_diff"]
    assert [(g["gateway"], g.get("has_override", False)) for g in preview["gateways"]] == [
        ("a", True), ("b", False)]
    assert "default_action" in preview["gateways"][0]["shadows"]
    table = await ok(cli, "policy", "set", "dry", "-f", proposed, "--dry-run")
    assert "nothing stored, nothing pushed" in table and "would get a new policy" in table
    deny = write(tmp_path, "ob.yaml", "default_action: deny\n")
    over = await ok_json(cli, "policy", "set", "dry/b", "-f", deny, "--dry-run")
    assert [(g["gateway"], g["shadows"]) for g in over["gateways"]] == [("b", ["default_action"])]
    assert over["diff"]["default_after"] == "deny" and over["diff"]["default_before"] == ""
    assert await ok_json(cli, "tenant", "show", "dry") == before  # no version, no push
    assert len((await ok_json(cli, "policy", "history", "dry"))["versions"]) == 1
    bad = write(tmp_path, "x.yaml", "rules: [1]\n")
    error = await failed(cli, "policy", "set", "dry", "-f", bad, "--dry-run")
    assert "line 1:" in error


async def test_deleting_a_gateway_removes_its_override(
    controller: RunningController, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cli = async_cli(controller, monkeypatch, capsys)
    await ok(cli, "tenant", "create", "gone")
    await ok(cli, "gateway", "add", "gone/a")
    await ok(cli, "policy", "set", "gone/a", "-f", write(tmp_path, "o.yaml", OVERRIDE))
    bundle = (await ok_json(cli, "policy", "show", "gone"))["bundle"]
    assert len(bundle["gateways"]) == 1
    seq = (await ok_json(cli, "tenant", "show", "gone"))["tenant_seq"]
    await ok(cli, "gateway", "delete", "gone/a")
    shown = await ok_json(cli, "policy", "show", "gone")
    assert not shown["bundle"].get("gateways")
    assert (await ok_json(cli, "tenant", "show", "gone"))["tenant_seq"] == seq + 1  # pushed

    def overrides() -> int:
        with controller.app.service.db.session(readonly=True) as s:
            return len(s.exec(PolicyOverride.__table__.select()).all())  # type: ignore[attr-defined]

    assert await asyncio.to_thread(overrides) == 0

    # A revoked gateway re-enrolled as a new identity keeps its override (under its new id).
    await ok(cli, "gateway", "add", "gone/b")
    await ok(cli, "policy", "set", "gone/b", "-f", write(tmp_path, "o.yaml", OVERRIDE))
    old_id = (await ok_json(cli, "gateway", "show", "gone/b"))["id"]
    await ok(cli, "gateway", "revoke", "gone/b")
    await ok(cli, "gateway", "token", "gone/b")
    new_id = (await ok_json(cli, "gateway", "show", "gone/b"))["id"]
    assert new_id != old_id
    assert (await ok_json(cli, "policy", "show", "gone/b"))["yaml"] == OVERRIDE
    entries = (await ok_json(cli, "policy", "show", "gone"))["bundle"]["gateways"]
    assert [e["gateway_id"] for e in entries] == [new_id]


async def test_false_positive_exemptions_reach_the_override_bundle(
    controller: RunningController, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cli = async_cli(controller, monkeypatch, capsys)
    tenant = await ok_json(cli, "tenant", "create", "fp")
    await ok(cli, "gateway", "add", "fp/a")
    await ok(cli, "policy", "set", "fp/a", "-f", write(tmp_path, "o.yaml", OVERRIDE))
    await asyncio.to_thread(controller.app.service.false_positives.report, tenant["id"], "203.0.113.9")
    bundle = (await ok_json(cli, "policy", "show", "fp"))["bundle"]
    assert bundle["exempt"] == ["203.0.113.9"]
    assert bundle["gateways"][0]["bundle"]["exempt"] == ["203.0.113.9"]
    await ok(cli, "policy", "set", "fp", "-f", write(tmp_path, "t.yaml", TENANT))  # recompiled: still there
    bundle = (await ok_json(cli, "policy", "show", "fp"))["bundle"]
    assert bundle["gateways"][0]["bundle"]["exempt"] == ["203.0.113.9"]
    mine = (await ok_json(cli, "policy", "show", "fp/a"))["bundle"]
    assert mine["exempt"] == ["203.0.113.9"] and mine["default_action"] == "deny"


def _cidr_rules(prefix: str, count: int, start: int) -> str:
    lines = []
    for r in range(0, count, 1000):
        lines += [f"  - name: {prefix}-{r // 1000}", "    action: deny", "    cidrs:"]
        lines += [f"      - 2001:db8:{start + i:x}::/48" for i in range(r, min(r + 1000, count))]
    return "\n".join(lines) + "\n"


async def test_large_tenant_bundle_travels_in_parts(
    controller: RunningController, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Each gateway's bundle fits one broker message, the tenant's with all of them does not: the push
    goes in parts and each agent assembles it and enforces its own."""
    cli = async_cli(controller, monkeypatch, capsys)
    monkeypatch.setenv("MSSP_TIMEOUT", "120")  # 26,000 CIDRs compiled per set: slow on a loaded 2-core box
    await ok(cli, "tenant", "create", "big")
    one, two = await controller.enroll("big", "a"), await controller.enroll("big", "b")
    await wait_until(lambda: one.agent.synced.is_set() and two.agent.synced.is_set())
    await ok(cli, "policy", "set", "big", "-f",
             write(tmp_path, "t.yaml", "default_action: allow\nrules:\n" + _cidr_rules("t", 14000, 0)))
    for name, start in (("a", 20000), ("b", 30000)):
        doc = "rules:\n" + _cidr_rules(f"gw-{name}", 6000, start)
        await ok(cli, "policy", "set", f"big/{name}", "-f", write(tmp_path, f"{name}.yaml", doc))

    def last_push_bytes() -> int:
        from controller.store.models import PushLog, Tenant

        with controller.app.service.db.session(readonly=True) as s:
            tenant = s.exec(select(Tenant).where(Tenant.name == "big")).one()
            row = s.exec(select(PushLog).where(PushLog.channel == f"tenant:{tenant.id}")
                         .order_by(PushLog.seq.desc())).first()  # type: ignore[attr-defined]
            assert row is not None
            return len(row.payload)

    assert await asyncio.to_thread(last_push_bytes) > MAX_SINGLE_PUSH_BYTES
    await wait_until(lambda: rule_names(enforced(one))[:1] == ["gw-a-0"] and
                     rule_names(enforced(two))[:1] == ["gw-b-0"], within=60)
    assert len(enforced(one)["rules"]) == 6 + 14 and "gateways" not in enforced(one)
    # A gateway that joins now gets the whole bundle in a snapshot over gRPC and enforces the tenant's.
    late = await controller.enroll("big", "c")
    await wait_until(lambda: len(enforced(late).get("rules", [])) == 14, within=60)
    assert rule_names(enforced(late))[0] == "t-0" and len(late.agent.state.policy.gateways) == 2
