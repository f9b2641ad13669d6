"""Policy history: the migration's backfill and schema (SQLite and PostgreSQL), concurrent sets that
each get a version of their own, and through msspctl against a real controller with a real agent:
history with who and when, diffs, rollbacks that are pushed and enforced, and refusals that change
nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel, select

from controller.service import ControllerService
from controller.services.policy_history import PolicyHistory
from controller.simulation import wait_until
from controller.store import policy_models
from controller.store.db import Database
from controller.store.policy_models import PolicyOverride, PolicyVersion
from mssp.v1 import common_pb2
from tests.support.fleet import RunningController
from tests.support.policy_cli import async_cli, enforced, failed, ok, ok_json, rule_names, write
from tests.support.schema import tables_in

V1 = "default_action: allow\nrules:\n  - name: block-ai\n    action: deny\n    categories: [ai_tools]\n"
V2 = V1 + "  - name: block-smb\n    action: deny\n    protocol: tcp\n    ports: [445]\n"
V3 = V2.replace("default_action: allow", "default_action: deny").replace(
    "categories: [ai_tools]", "categories: [ai_tools, cloud_storage]")

OURS = {"policy_version", "policy_override"}


# ---- the migration ----------------------------------------------------------------------------


def test_migration_creates_exactly_the_model_tables(db: Database) -> None:
    assert policy_models.PolicyVersion.__tablename__ in SQLModel.metadata.tables
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    mine = [d for d in diffs if OURS & set(tables_in(d))]
    assert mine == []



def test_migration_backfills_current_policies(db_url: str) -> None:
    db = Database(db_url)
    try:
        command.upgrade(db.alembic_config(), "0011_operators")
        with db.engine.begin() as conn:
            for tid, name, version, yaml in (("t1", "acme", 3, V2), ("t2", "globex", 0, ""),
                                             ("t3", "initech", 1, V1)):
                conn.execute(text(
                    "INSERT INTO tenant (id, name, plan, created_at_ms, policy_version, policy_yaml, "
                    "policy_bundle, policy_updated_at_ms) "
                    "VALUES (:id, :name, 'standard', 1, :v, :y, :b, :at)"),
                    {"id": tid, "name": name, "v": version, "y": yaml, "b": b"", "at": 1000 + version})
        db.upgrade()
        with db.session(readonly=True) as s:
            rows = s.exec(select(PolicyVersion).order_by(PolicyVersion.tenant_id)).all()
        assert [(r.tenant_id, r.gateway_id, r.version, r.yaml, r.created_at_ms) for r in rows] == [
            ("t1", "", 3, V2, 1003), ("t3", "", 1, V1, 1001)]
        assert all("recorded at upgrade" in r.summary for r in rows)
        history = PolicyHistory(db).history("acme")
        assert [(v.version, v.rules, v.default_action, v.current) for v in history] == [(3, 2, "allow", True)]
        command.downgrade(db.alembic_config(), "0011_operators")  # and back
        db.upgrade()
    finally:
        db.dispose()


# ---- concurrency ------------------------------------------------------------------------------


def test_concurrent_sets_get_distinct_versions_and_all_are_kept(db: Database) -> None:
    svc = ControllerService(db, token_ttl_seconds=3600)
    svc.create_tenant("acme")
    svc.add_gateway("acme", "b1")
    docs = [V1.replace("block-ai", f"block-{i}") for i in range(8)]

    def set_one(i: int) -> int:
        if i % 4 == 3:  # overrides share the tenant's counter
            return svc.policies.set_policy("acme", f"rules:\n  - name: gw-{i}\n    action: deny\n"
                                           "    cidrs: [192.0.2.0/24]\n", "b1").version
        return svc.policies.set_policy("acme", docs[i]).version

    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(set_one, range(8)))
    assert sorted(versions) == list(range(1, 9))
    with db.session(readonly=True) as s:
        kept = s.exec(select(PolicyVersion).order_by(PolicyVersion.version)).all()
        override = s.exec(select(PolicyOverride)).one()
    assert [r.version for r in kept] == list(range(1, 9))
    tenant_rows = [r for r in kept if not r.gateway_id]
    assert sorted(r.yaml for r in tenant_rows) == sorted(docs[i] for i in range(8) if i % 4 != 3)
    assert override.version == max(r.version for r in kept if r.gateway_id)
    # What is stored (and was pushed last) is the newest version's document.
    info = svc.get_policy("acme")
    assert info.yaml == tenant_rows[-1].yaml and info.version == tenant_rows[-1].version
    bundle = common_pb2.PolicyBundle.FromString(info.bundle)
    assert bundle.version == 8 and len(bundle.gateways) == 1


# ---- through msspctl, against a real controller and a real agent --------------------------------


async def test_history_diff_and_rollback(
    controller: RunningController, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cli = async_cli(controller, monkeypatch, capsys)
    await ok(cli, "tenant", "create", "acme")
    agent = await controller.enroll("acme", "gw1")
    await wait_until(agent.agent.synced.is_set)
    for i, doc in enumerate((V1, V2, V3), 1):
        assert (await ok_json(cli, "policy", "set", "acme", "-f", write(tmp_path, f"v{i}.yaml", doc)))[
            "version"] == i

    history = (await ok_json(cli, "policy", "history", "acme"))["versions"]
    assert [v["version"] for v in history] == [1, 2, 3]
    assert all(v["created_by"] == "bootstrap" and v["created_at_ms"] > 0 for v in history)
    assert [v["rules"] for v in history] == [1, 2, 2]
    assert [v["default_action"] for v in history] == ["allow", "allow", "deny"]
    assert [v.get("current", False) for v in history] == [False, False, True]
    assert "added block-smb" in history[1]["summary"]
    assert "changed block-ai" in history[2]["summary"] and "default allow -> deny" in history[2]["summary"]
    table = await ok(cli, "policy", "history", "acme")
    assert "3 (current)" in table and "bootstrap" in table

    diff = await ok_json(cli, "policy", "diff", "acme", "1", "3")
    assert diff["rules_added"] == ["block-smb"] and diff["rules_changed"] == ["block-ai"]
    assert diff["default_before"] == "allow" and diff["default_after"] == "deny"
    assert "-default_action: allow" in diff["unified_diff"]
    assert "+default_action: deny" in diff["unified_diff"]
    shown = await ok(cli, "policy", "diff", "acme", "2", "3")
    assert "--- acme v2" in shown and "rules changed: block-ai" in shown and "allow -> deny" in shown

    # Rollback: the old document as a new version, pushed and enforced.
    await wait_until(lambda: enforced(agent).get("default_action") == "ACTION_DENY")
    rolled = await ok_json(cli, "policy", "rollback", "acme", "1")
    assert rolled["version"] == 4 and rolled["yaml"] == V1 and rolled["seq"] > 0
    assert (await ok_json(cli, "policy", "show", "acme"))["yaml"] == V1
    await wait_until(lambda: enforced(agent).get("version") == "4")
    assert rule_names(enforced(agent)) == ["block-ai"] and enforced(agent)["default_action"] == "ACTION_ALLOW"
    last = (await ok_json(cli, "policy", "history", "acme"))["versions"][-1]
    assert last["version"] == 4 and last["summary"].startswith("rollback to v1")

    # Rolling back to the document in force says so and changes nothing.
    before = await ok_json(cli, "tenant", "show", "acme")
    same = await ok(cli, "policy", "rollback", "acme", "4")
    assert "is the current version; nothing changed" in same
    again = await ok_json(cli, "policy", "rollback", "acme", "1")
    assert again["unchanged"] is True and "same document as the current version 4" in again["summary"]
    assert await ok_json(cli, "tenant", "show", "acme") == before

    # Unknown tenant, version or gateway: one clear error, nothing changed.
    assert "no policy version 9" in await failed(cli, "policy", "rollback", "acme", "9")
    assert "no policy version 9" in await failed(cli, "policy", "diff", "acme", "1", "9")
    assert "unknown tenant 'nobody'" in await failed(cli, "policy", "history", "nobody")
    assert "unknown tenant 'nobody'" in await failed(cli, "policy", "rollback", "nobody", "1")
    assert "unknown gateway acme/nope" in await failed(cli, "policy", "history", "acme/nope")
    assert await ok_json(cli, "tenant", "show", "acme") == before


async def test_override_history_and_rollback(
    controller: RunningController, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cli = async_cli(controller, monkeypatch, capsys)
    await ok(cli, "tenant", "create", "ovh")
    agent = await controller.enroll("ovh", "gw1")
    await wait_until(agent.agent.synced.is_set)
    await ok(cli, "policy", "set", "ovh", "-f", write(tmp_path, "t.yaml", V1))  # version 1
    first = "rules:\n  - name: lab\n    action: allow\n    cidrs: [192.0.2.0/24]\n"
    await ok(cli, "policy", "set", "ovh/gw1", "-f", write(tmp_path, "o1.yaml", first))  # 2
    await ok(cli, "policy", "set", "ovh/gw1", "-f", write(tmp_path, "o2.yaml", "default_action: deny\n"))  # 3
    await ok(cli, "policy", "unset", "ovh/gw1")  # 4
    history = (await ok_json(cli, "policy", "history", "ovh/gw1"))["versions"]
    assert [v["version"] for v in history] == [2, 3, 4]
    assert history[0]["summary"].startswith("1 rule, default inherited")
    assert "removed lab" in history[1]["summary"] and "default inherited -> deny" in history[1]["summary"]
    assert history[2].get("removed") is True and history[2]["summary"] == "override removed"
    assert [v["version"] for v in (await ok_json(cli, "policy", "history", "ovh"))["versions"]] == [1]
    # A version of the override is not one of the tenant's, and the other way round.
    assert "is the override of ovh/gw1" in await failed(cli, "policy", "rollback", "ovh", "2")
    assert "is the tenant's policy" in await failed(cli, "policy", "diff", "ovh/gw1", "1", "2")

    rolled = await ok_json(cli, "policy", "rollback", "ovh/gw1", "2")
    assert rolled["version"] == 5 and rolled["yaml"] == first
    await wait_until(lambda: rule_names(enforced(agent)) == ["lab", "block-ai"])
    diff = await ok_json(cli, "policy", "diff", "ovh/gw1", "2", "3")
    assert diff["rules_removed"] == ["lab"] and diff["default_after"] == "deny"
