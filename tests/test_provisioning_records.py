"""Provisioning's store side, on SQLite and PostgreSQL: the migration matches the models, targets
and host keys per gateway, a key pinned once (the first of racing runs wins), runs with their hosts."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from controller.domain.errors import NotFound
from controller.provisioning.hostkeys import HostKey
from controller.provisioning.records import ProvisioningRecords
from controller.provisioning.runner import HostOutcome
from controller.provisioning.targets import Target, parse_jump
from controller.service import ControllerService
from controller.store.db import Database
from tests.support.schema import tables_in

OURS = {"ssh_target", "provision_run", "provision_run_host"}
KEY_A = "AAAAC3NzaC1lZDI1NTE5AAAAIHd4Ytc4bhNvXB2U6V3QLiTR9fGdjLzF9P6Wa5U2VdT+"
KEY_B = "AAAAC3NzaC1lZDI1NTE5AAAAIBx1hFMbV7v6dq3qZ9a6J1yQhQm2Fj0wWfDk0mS2T0Wq"


@pytest.fixture
def records(db: Database) -> ProvisioningRecords:
    service = ControllerService(db, token_ttl_seconds=3600, online_window_seconds=90)
    service.create_tenant("acme")
    service.create_tenant("globex")
    for name in ("r1", "r2"):
        service.add_gateway("acme", name)
    service.add_gateway("globex", "r1")
    return ProvisioningRecords(db)


def test_migration_creates_exactly_the_model_tables(db: Database) -> None:
    assert OURS <= set(SQLModel.metadata.tables)
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert [d for d in diffs if OURS & set(tables_in(d))] == []


def test_targets_are_per_tenant_and_a_moved_router_loses_its_pinned_key(records: ProvisioningRecords) -> None:
    records.save_targets("acme", [Target("r1", "192.0.2.11"), Target("r2", "192.0.2.12", 2222, "ops")],
                         parse_jump("ops@198.51.100.2"))
    records.save_targets("globex", [Target("r1", "203.0.113.11")], None)
    acme = {k.target.name: k for k in records.known("acme")}
    assert acme["r2"].target == Target("r2", "192.0.2.12", 2222, "ops")
    assert acme["r1"].jump is not None and acme["r1"].jump.host == "198.51.100.2"
    assert [k.target.host for k in records.known("globex")] == ["203.0.113.11"]

    assert records.pin_host_keys("acme", {"r1": HostKey("192.0.2.11", "ssh-ed25519", KEY_A)}) == ["r1"]
    key = records.known("acme", ["r1"])[0].host_key
    assert key is not None and key.key_b64 == KEY_A and key.endpoint == "192.0.2.11"
    assert records.known("globex")[0].host_key is None  # another tenant's r1 is another router
    records.save_targets("acme", [Target("r1", "192.0.2.11")], None)  # same address: key kept
    assert records.known("acme", ["r1"])[0].host_key is not None
    records.save_targets("acme", [Target("r1", "192.0.2.21")], None)  # moved: the old key is not its key
    assert records.known("acme", ["r1"])[0].host_key is None


def test_a_pinned_key_is_never_replaced_by_a_later_run(records: ProvisioningRecords) -> None:
    records.save_targets("acme", [Target("r1", "192.0.2.11")], None)
    first, second = (HostKey("192.0.2.11", "ssh-ed25519", k) for k in (KEY_A, KEY_B))
    with ThreadPoolExecutor(2) as pool:  # two runs meeting a new router at once: one key wins
        won = list(pool.map(lambda k: records.pin_host_keys("acme", {"r1": k}), (first, second)))
    assert sorted(len(w) for w in won) == [0, 1]
    winner = records.known("acme", ["r1"])[0].host_key
    assert winner is not None and winner.key_b64 in (KEY_A, KEY_B)
    assert records.pin_host_keys("acme", {"r1": first if winner.key_b64 == KEY_B else second}) == []
    assert records.forget_host_key("acme", "r1") == winner.fingerprint
    assert records.known("acme", ["r1"])[0].host_key is None
    with pytest.raises(NotFound, match="no host key"):
        records.forget_host_key("acme", "r1")


def test_unknown_or_unprovisioned_gateways_are_refused(records: ProvisioningRecords) -> None:
    with pytest.raises(NotFound, match="unknown gateway acme/nope"):
        records.known("acme", ["nope"])
    with pytest.raises(NotFound, match="never provisioned over SSH"):
        records.known("acme", ["r2"])
    with pytest.raises(NotFound):
        records.known("initech")


def test_runs_keep_each_hosts_result(records: ProvisioningRecords) -> None:
    run = records.start_run("provision", "acme", "alice", "0.2.0")
    assert records.get_run(run).status == "running"
    status = records.finish_run(run, [
        HostOutcome("r1", "192.0.2.11", "changed", ok=12, changed=9, seconds=31.5),
        HostOutcome("r2", "192.0.2.12", "unreachable", task="Gathering Facts", message="no route to host"),
    ])
    assert status == "failed"
    (found,) = records.list_runs("acme")
    assert (found.kind, found.operator, found.agent_version, found.status) == ("provision", "alice", "0.2.0",
                                                                              "failed")
    assert found.finished_at_ms >= found.started_at_ms > 0
    assert [(h.gateway, h.state, h.message) for h in found.hosts] == [
        ("r1", "changed", ""), ("r2", "unreachable", "no route to host")]
    assert records.list_runs("globex") == []
    time.sleep(0.005)  # newest first: the second run starts in a later millisecond
    ok = records.start_run("upgrade", "acme", "alice", "0.3.0")
    assert records.finish_run(ok, [HostOutcome("r1", "192.0.2.11", "ok")]) == "ok"
    assert [r.kind for r in records.list_runs("acme")] == ["upgrade", "provision"]
