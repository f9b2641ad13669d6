"""Named operators with roles and the audit log, through msspctl against a real controller: a
read-only operator cannot change anything, a revoked token stops at once, bad input changes nothing,
every change is recorded with who, what, before and after, and no secret reaches the log."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from controller.domain.errors import Conflict
from controller.grpc_api.access import is_read
from controller.store.db import Database
from mssp.v1 import accounts_pb2, admin_pb2, intel_pb2, operator_pb2, telemetry_pb2
from tests.support.controller_proc import ControllerProc
from tests.test_cli import as_json, assert_failed, assert_ok


def _add(proc: ControllerProc, name: str, *role: str) -> dict[str, str]:
    created = as_json(proc.run("operator", "add", name, *role, "-o", "json"))
    assert isinstance(created, dict) and created["token"].startswith("mssp_op_")
    return {**proc.env, "MSSP_OPERATOR_TOKEN": created["token"]}


def test_roles_revocation_and_bad_input(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    admin = _add(controller_proc, "ops-admin", "--role", "admin")
    viewer = _add(controller_proc, "ops-viewer")  # read-only unless told
    me = as_json(run("operator", "whoami", "-o", "json", env=viewer))
    assert isinstance(me, dict) and (me["name"], me["role"]) == ("ops-viewer", "read-only")
    assert "bootstrap" in run("operator", "whoami").stdout

    assert_ok(run("tenant", "list", env=viewer))
    assert_failed(run("tenant", "create", "ops-denied", env=viewer), "read-only", "needs an admin")
    assert_failed(run("operator", "add", "ops-sneaky", "--role", "admin", env=viewer), "read-only")
    assert "ops-denied" not in run("tenant", "list").stdout
    assert_ok(run("tenant", "create", "ops-allowed", env=admin))

    before = as_json(run("operator", "list", "--all", "-o", "json"))
    assert_failed(run("operator", "add", "Ops-Upper"), "lower-case")
    assert_failed(run("operator", "add", "bootstrap"), "reserved")
    assert_failed(run("operator", "add", "ops-x", "--role", "root"), "unknown role")
    assert_failed(run("operator", "add", "ops-admin"), "already exists")
    assert_failed(run("operator", "revoke", "ops-nobody"), "unknown operator")
    assert_failed(run("operator", "revoke", "bootstrap"), "operator.token")
    assert as_json(run("operator", "list", "--all", "-o", "json")) == before

    assert_ok(run("operator", "revoke", "ops-viewer", env=admin))
    assert_failed(run("tenant", "list", env=viewer), "credential rejected", "MSSP_OPERATOR_TOKEN")
    assert_failed(run("operator", "revoke", "ops-viewer"), "already revoked")
    listed = run("operator", "list")
    assert_ok(listed)
    assert "ops-admin" in listed.stdout and "ops-viewer" not in listed.stdout
    assert "ops-viewer" in run("operator", "list", "--all").stdout
    assert_failed(run("tenant", "list", env={**admin, "MSSP_OPERATOR_TOKEN": "mssp_op_forged"}),
                  "credential rejected")


def test_audit_log_says_who_changed_what(controller_proc: ControllerProc, tmp_path: Path) -> None:
    run = controller_proc.run
    alice = _add(controller_proc, "alice", "--role", "admin")
    assert_ok(run("tenant", "create", "audit-acme", env=alice))
    assert_ok(run("tenant", "set-plan", "audit-acme", "pro", env=alice))
    assert_failed(run("tenant", "set-plan", "audit-acme", "no-such-plan", env=alice), "plan")
    added = run("gateway", "add", "audit-acme/gw1", "-o", "json", env=alice)
    token = json.loads(added.stdout)["enrollment_token"]
    assert_ok(run("ioc", "add", "203.0.113.77", "--scope", "tenant:audit-acme", env=alice))
    assert_ok(run("ioc", "add", "203.0.113.78", "--scope", "tenant:audit-acme"))  # the bootstrap admin
    assert_ok(run("tenant", "list", env=alice))  # a read: not audited
    feed = tmp_path / "c2.txt"
    feed.write_text("203.0.113.90\n203.0.113.91\n")
    assert_ok(run("ioc", "import", str(feed), "--scope", "tenant:audit-acme", "--dry-run", env=alice))
    assert_ok(run("ioc", "import", str(feed), "--scope", "tenant:audit-acme", env=alice))
    policy = tmp_path / "policy.yaml"
    policy.write_text("default_action: deny\nrules: []\n")
    assert_ok(run("policy", "set", "audit-acme", "-f", str(policy), env=alice))

    raw = run("audit", "list", "--tenant", "audit-acme", "-o", "json")
    assert token not in raw.stdout  # the one-time token is never kept
    events = as_json(raw)["events"]  # type: ignore[index]
    actions = [(e["operator"], e["action"]) for e in reversed(events)]
    assert actions == [("alice", "CreateTenant"), ("alice", "SetTenantPlan"), ("alice", "AddGateway"),
                       ("alice", "AddIoc"), ("bootstrap", "AddIoc"), ("alice", "ImportIocs"),
                       ("alice", "SetPolicy")]  # the dry run changed nothing: not there
    plan = next(e for e in events if e["action"] == "SetTenantPlan")
    assert plan["before"]["plan"] == "standard" and plan["after"]["plan"] == "pro"
    assert plan["tenant"] == "audit-acme" and plan["target"] == "audit-acme" and plan["role"] == "admin"
    gateway = next(e for e in events if e["action"] == "AddGateway")
    assert gateway["before"] is None and gateway["target"] == "audit-acme/gw1"
    assert gateway["after"]["enrollment_token"] == "(redacted)"
    imported = next(e for e in events if e["action"] == "ImportIocs")
    assert imported["request"]["options"]["scope"] == "tenant:audit-acme"
    assert imported["request"].get("data", "(omitted)") == "(omitted)" and imported["after"]["new"] == 2
    policy_set = next(e for e in events if e["action"] == "SetPolicy")
    assert "default_action: allow" in policy_set["before"]["yaml"]
    assert policy_set["after"]["yaml"] == "default_action: deny\nrules: []\n"

    iocs = as_json(run("ioc", "list", "--scope", "tenant:audit-acme", "-o", "json"))
    sources = {i["ioc"]["value"]: i["sources"] for i in iocs}  # type: ignore[union-attr]
    assert sources == {"203.0.113.77": ["operator:alice"], "203.0.113.78": ["operator"],
                       "203.0.113.90": ["import"], "203.0.113.91": ["import"]}  # imports keep theirs

    assert [e["action"] for e in as_json(run("audit", "list", "--operator", "alice", "--action", "AddIoc",
                                             "-o", "json"))["events"]] == ["AddIoc"]  # type: ignore[index]
    assert as_json(run("audit", "list", "--tenant", "audit-nobody", "-o", "json"))["events"] == []  # type: ignore[index]
    assert_failed(run("audit", "list", "--since", "yesterday"), "--since")
    assert_failed(run("audit", "list", "--action", "Set Policy"), "unknown action")
    table = run("audit", "list", "--tenant", "audit-acme")
    assert_ok(table)
    assert "SetTenantPlan" in table.stdout and "alice" in table.stdout


def test_concurrent_revocations_succeed_once(db: Database) -> None:
    from controller.services.operators import Operators

    ops = Operators(db)
    _, token = ops.create("racer", "admin", created_by="bootstrap")
    assert ops.identify(token) is not None
    barrier, results = threading.Barrier(8), []

    def revoke() -> None:
        barrier.wait()
        try:
            ops.revoke("racer")
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=revoke) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["ok"]
    assert ops.identify(token) is None


def test_every_call_is_classed_as_a_read_or_a_change() -> None:
    """A read-only operator may make exactly these calls; every other one changes state."""
    reads = {m.name for pb in (operator_pb2, accounts_pb2, intel_pb2, telemetry_pb2, admin_pb2)
             for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods if is_read(m.name)}
    assert {"ListTenants", "GetTenant", "GetGateway", "FleetStatus", "ListIocs", "ExportIocs", "ShowIoc",
            "ListAlerts", "Top", "Usage", "WhoAmI", "ListAudit", "ExportBilling", "ListSigningKeys"} <= reads
    for change in ("CreateTenant", "SetPolicy", "AddIoc", "RemoveIoc", "ImportIocs", "CloseBillingPeriod",
                   "RotateSigningKey", "CreateOperator", "RevokeOperator", "RunFeed", "PromoteSighting"):
        assert not is_read(change)


def test_audit_of_overrides_and_rollbacks_has_their_target_and_before(controller_proc: ControllerProc,
                                                                       tmp_path: Path) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "audit-pol"))
    assert_ok(run("gateway", "add", "audit-pol/gw1"))
    tenant_doc, override_doc = tmp_path / "t.yaml", tmp_path / "o.yaml"
    tenant_doc.write_text("default_action: allow\nrules: []\n")
    override_doc.write_text("default_action: deny\n")
    assert_ok(run("policy", "set", "audit-pol", "-f", str(tenant_doc)))
    assert_ok(run("policy", "set", "audit-pol/gw1", "-f", str(override_doc)))
    assert_ok(run("policy", "set", "audit-pol/gw1", "-f", str(tenant_doc)))
    first = as_json(run("policy", "history", "audit-pol", "-o", "json"))["versions"][-1]["version"]  # type: ignore[index]
    tenant_doc.write_text("default_action: deny\nrules: []\n")
    assert_ok(run("policy", "set", "audit-pol", "-f", str(tenant_doc)))
    assert_ok(run("policy", "rollback", "audit-pol", str(first)))
    again = run("policy", "rollback", "audit-pol", str(first))  # in force already: changes nothing
    assert_ok(again)
    assert "nothing changed" in again.stdout
    events = as_json(run("audit", "list", "--tenant", "audit-pol", "-o", "json"))["events"]  # type: ignore[index]
    sets = [e for e in reversed(events) if e["action"] == "SetPolicy"]
    assert [e["target"] for e in sets] == ["audit-pol", "audit-pol/gw1", "audit-pol/gw1", "audit-pol"]
    assert sets[2]["before"]["yaml"] == "default_action: deny\n"  # the override it replaced
    rollbacks = [e for e in events if e["action"] == "RollbackPolicy"]
    assert len(rollbacks) == 1  # the second rollback changed nothing: not recorded
    assert rollbacks[0]["target"] == "audit-pol" and rollbacks[0]["before"]["tenant"] == "audit-pol"


def test_api_key_rotation_and_revocation_are_audited_under_their_tenant(
        controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "audit-key"))
    created = as_json(run("apikey", "create", "audit-key", "-o", "json"))
    assert isinstance(created, dict)
    key_id = created["api_key"]["id"]
    rotated = as_json(run("apikey", "rotate", key_id, "--overlap", "0", "-o", "json"))
    assert isinstance(rotated, dict)
    new_id = rotated["api_key"]["id"]
    assert new_id != key_id
    assert_ok(run("apikey", "revoke", new_id))
    raw = run("audit", "list", "--tenant", "audit-key", "-o", "json")
    for secret in (created.get("key"), rotated.get("key")):
        assert secret and secret not in raw.stdout  # the keys themselves are never kept
    events = {e["action"]: e for e in as_json(raw)["events"]}  # type: ignore[index]
    assert {"CreateApiKey", "RotateApiKey", "RevokeApiKey"} <= set(events)
    assert events["RotateApiKey"]["before"]["id"] == key_id
    assert events["RevokeApiKey"]["before"]["id"] == new_id
    assert all(events[a]["tenant"] == "audit-key" for a in ("RotateApiKey", "RevokeApiKey"))
