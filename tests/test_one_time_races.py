"""One-time transitions under real concurrency (issue 7 item 5): an enrollment token is spent once,
a gateway enrolls once and is revoked once, concurrent policy writers get distinct versions, and an
indicator is added, removed and expired once.

The racers are separate PROCESSES (spawn), each with its own engine on the same store, so the
store's own locking is what is tested (SQLite file locks, PostgreSQL row locks), not the GIL.
Several rounds run per test. Before the fix the first SQLite round already enrolled all four racers
with one token, and policy versions, indicator inserts and expiry removals collided on both stores.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from controller.domain.errors import Conflict, Unauthenticated
from controller.service import ControllerService
from controller.store.db import Database
from controller.store.models import Channel
from gateway_agent.identity import make_nats_user_seed, make_tls_key_and_csr
from mssp.common.channels import tenant_channel
from mssp.v1 import enrollment_pb2, enrollment_pb2_grpc, push_pb2
from tests.support.fleet import controller_settings, start_controller

RACERS = 4
ROUNDS = 12
POLICY_WRITES = 8  # per racer
COUNTS = 25  # per racer


def _racer(url: str, tasks: Any, results: Any, barrier: Any) -> None:
    """One process: its own engine and service; every task starts at the barrier with the others."""
    db = Database(url)
    svc = ControllerService(db)
    try:
        while (task := tasks.get()) is not None:
            kind, arg = task
            barrier.wait(timeout=120)
            work = {"enroll": _enroll_once, "revoke": _revoke, "policy": _set_policies, "count": _count,
                    "add_ioc": _add_ioc, "remove_ioc": _remove_ioc, "expire": _expire}[kind]
            try:
                results.put(work(svc, arg))
            except Exception as exc:  # reported, so the test shows it instead of waiting for a result
                results.put(("error", repr(exc)))
    finally:
        db.dispose()


def _enroll_once(svc: ControllerService, secret: str) -> tuple[str, str]:
    """What the Enroll servicer does with the store: redeem, then (only if that won) complete."""
    try:
        ticket = svc.redeem_enrollment_token(secret)
    except Unauthenticated as exc:
        return "refused", str(exc)
    serial = uuid.uuid4().hex  # the certificate this racer would hold
    try:
        svc.complete_enrollment(ticket.gateway_id, cert_serial=serial, nats_public_key="U" + serial,
                                agent_version="race")
    except Conflict as exc:
        return "conflict", str(exc)
    return "enrolled", serial


def _set_policies(svc: ControllerService, tenant: str) -> list[tuple[int, int, str]]:
    out = []
    for _ in range(POLICY_WRITES):
        marker = uuid.uuid4().hex[:12]
        info = svc.set_policy(tenant, f"default_action: allow\nrules: []\n# {marker}\n")
        out.append((info.version, info.seq, marker))
    return out


def _revoke(svc: ControllerService, gateway: str) -> tuple[str, str]:
    tenant, _, name = gateway.partition("/")
    try:
        return "revoked", svc.revoke_gateway(tenant, name)[1]
    except Conflict as exc:
        return "conflict", str(exc)


def _add_ioc(svc: ControllerService, value: str) -> int:
    return svc.add_ioc(value, ttl_seconds=3600).seq


def _remove_ioc(svc: ControllerService, value: str) -> tuple[bool, int]:
    reply = svc.remove_ioc(value)
    return reply.removed, reply.seq


def _expire(svc: ControllerService, _: str) -> int:
    return svc.expire_iocs()


def _count(svc: ControllerService, channel: str) -> int:
    """A plain read-then-write through Database.session(): only the store's locking keeps it whole."""
    for _ in range(COUNTS):
        with svc.db.session() as s:
            row = s.get(Channel, channel)
            assert row is not None
            row.seq += 1
            s.add(row)
    return COUNTS


@dataclass
class Racers:
    tasks: Any
    results: Any

    def run(self, kind: str, arg: str) -> list[Any]:
        """Every racer takes the same task at once; their answers in arrival order."""
        return self.run_mixed([(kind, arg)] * RACERS)

    def run_mixed(self, tasks: list[tuple[str, str]]) -> list[Any]:
        """One task per racer, all started at once."""
        assert len(tasks) == RACERS
        for task in tasks:
            self.tasks.put(task)
        return [self.results.get(timeout=180) for _ in range(RACERS)]


@pytest.fixture
def racers(db: Database) -> Iterator[Racers]:
    with _racers(db.url) as started:
        yield started


@contextmanager
def _racers(url: str) -> Iterator[Racers]:
    ctx: SpawnContext = multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    barrier = ctx.Barrier(RACERS)
    procs = [ctx.Process(target=_racer, args=(url, tasks, results, barrier), daemon=True)
             for _ in range(RACERS)]
    for proc in procs:
        proc.start()
    try:
        yield Racers(tasks, results)
    finally:
        for _ in procs:
            tasks.put(None)
        barrier.abort()  # a racer stuck at the barrier (a failed round) leaves at once
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _gateway_row(db: Database, gateway_id: str) -> tuple[str, str | None, str]:
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT status, cert_serial, nats_public_key FROM gateway WHERE id = :id"),
                           {"id": gateway_id}).one()
    return row[0], row[1], row[2]


def test_a_token_races_from_several_processes_and_exactly_one_enrolls(
    db: Database, racers: Racers
) -> None:
    svc = ControllerService(db, token_ttl_seconds=3600)
    svc.create_tenant("acme")
    for round_ in range(ROUNDS):
        gateway, secret, _ = svc.add_gateway("acme", f"gw{round_}")
        outcomes = racers.run("enroll", secret)
        kinds = sorted(kind for kind, _ in outcomes)
        assert kinds == ["enrolled"] + ["refused"] * (RACERS - 1), f"round {round_}: {outcomes}"
        losers = [detail for kind, detail in outcomes if kind == "refused"]
        assert all("already used" in detail for detail in losers), losers
        (serial,) = [detail for kind, detail in outcomes if kind == "enrolled"]
        # The one credential the store knows is the winner's.
        assert _gateway_row(db, gateway.id) == ("enrolled", serial, "U" + serial)
        assert svc.gateway_identity_by_serial(serial) is not None


def test_revoke_racing_enrollment_never_leaves_an_unrevoked_credential(db: Database, racers: Racers) -> None:
    """Revoked while it enrolls: one revoke wins, the gateway ends revoked, and if the enrollment
    got through, the revoke returned its NATS key (so the broker revokes it too)."""
    svc = ControllerService(db, token_ttl_seconds=3600)
    svc.create_tenant("acme")
    for round_ in range(ROUNDS):
        gateway, secret, _ = svc.add_gateway("acme", f"gw{round_}")
        half = RACERS // 2
        outcomes = racers.run_mixed([("enroll", secret)] * half + [("revoke", f"acme/gw{round_}")] * half)
        revoked = [key for kind, key in outcomes if kind == "revoked"]
        enrolled = [serial for kind, serial in outcomes if kind == "enrolled"]
        assert len(revoked) == 1 and len(enrolled) <= 1, f"round {round_}: {outcomes}"
        status, serial, key = _gateway_row(db, gateway.id)
        assert status == "revoked", f"round {round_}: a revoked gateway is {status} again"
        if enrolled:
            assert (serial, key) == (enrolled[0], "U" + enrolled[0])
            assert revoked[0] == key, f"round {round_}: the revoke missed the enrolled NATS key"
        assert svc.gateway_identity_by_serial(serial or "none") is None


def test_concurrent_policy_writers_get_distinct_versions_and_no_lost_update(
    db: Database, racers: Racers
) -> None:
    svc = ControllerService(db)
    tenant = svc.create_tenant("acme")
    for round_ in range(3):
        writes = [w for batch in racers.run("policy", "acme") for w in batch]
        total = (round_ + 1) * RACERS * POLICY_WRITES
        versions = sorted(version for version, _, _ in writes)
        assert versions == list(range(total - RACERS * POLICY_WRITES + 1, total + 1)), "versions reused"
        assert len({seq for _, seq, _ in writes}) == len(writes)
        # The pushes agree with the answers, and the stored policy is the newest push's.
        pushes = {}
        with db.engine.connect() as conn:
            for (payload,) in conn.execute(text("SELECT payload FROM push_log WHERE channel = :c"),
                                           {"c": tenant_channel(tenant.id)}):
                push = push_pb2.Push.FromString(payload)
                pushes[push.seq] = push.policy.version
        assert {seq: version for version, seq, _ in writes}.items() <= pushes.items()
        newest_seq = max(pushes)
        assert pushes[newest_seq] == total
        stored = svc.get_policy("acme")
        assert stored.version == total
        marker = {version: m for version, _, m in writes}[total]
        assert stored.yaml.endswith(f"# {marker}\n")


def test_concurrent_adds_and_removes_of_one_indicator_apply_once_each(db: Database, racers: Racers) -> None:
    """Adding a new indicator from several processes at once: one row, every add answered, the
    row's seq is the last push's; removing it at once: one removal, one push."""
    svc = ControllerService(db)
    for round_ in range(4):
        value = f"race{round_}.example"
        seqs = racers.run("add_ioc", value)
        assert all(isinstance(seq, int) for seq in seqs), seqs
        (row,) = [i for i in svc.list_iocs() if i.ioc.value == value]
        assert row.seq == max(seqs) and len(set(seqs)) == RACERS
        removals = racers.run("remove_ioc", value)
        assert sorted(removed for removed, _ in removals) == [False] * (RACERS - 1) + [True], removals
        assert not [i for i in svc.list_iocs() if i.ioc.value == value]
    removal_pushes = [p for _, p in svc.unpublished_outbox(10_000) if p.iocs.remove]
    assert len(removal_pushes) == 4


def test_concurrent_expiry_removes_and_pushes_each_indicator_once(db: Database, racers: Racers) -> None:
    """Several controllers' expiry loops at once: each expired indicator is removed by one of them."""
    svc = ControllerService(db)
    svc.create_tenant("acme")
    for i in range(30):
        svc.add_ioc(f"198.51.100.{i + 1}", ttl_seconds=1)
        svc.add_ioc(f"exp{i}.example", "tenant:acme", ttl_seconds=1)
    time.sleep(1.2)
    assert sum(racers.run("expire", "")) == 60
    removed = [v.value for _, p in svc.unpublished_outbox(10_000) for v in p.iocs.remove]
    assert len(removed) == 60 and len(set(removed)) == 60


# -- SQLite: a session is one transaction holding the write lock from its first statement ------------

def test_sqlite_read_then_write_sessions_from_several_processes_lose_no_update(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.upgrade()
    try:
        with db.session() as s:
            s.add(Channel(name="race", seq=0))
        with _racers(db.url) as racers:
            assert racers.run("count", "race") == [COUNTS] * RACERS
        with db.session(readonly=True) as s:
            row = s.get(Channel, "race")
            assert row is not None and row.seq == COUNTS * RACERS
    finally:
        db.dispose()


def test_sqlite_readonly_session_reads_a_snapshot_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.upgrade()
    try:
        with db.session() as s:
            s.add(Channel(name="c", seq=1))

        def read() -> int:
            with db.session(readonly=True) as s:
                row = s.get(Channel, "c")
                assert row is not None
                return row.seq

        with db.session() as writer:  # BEGIN IMMEDIATE: the write lock until this block ends
            row = writer.get(Channel, "c")
            assert row is not None
            row.seq = 2
            writer.add(row)
            writer.flush()
            with ThreadPoolExecutor(1) as pool:
                assert pool.submit(read).result() == 1  # did not wait for the writer: it still holds the lock
        assert read() == 2
    finally:
        db.dispose()


def test_sqlite_write_session_nested_in_another_fails_at_once(tmp_path: Path) -> None:
    """It would wait for its own thread's lock until busy_timeout; a readonly one reads fine."""
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.upgrade()
    try:
        with db.session() as outer:
            outer.get(Channel, "global")  # the transaction (and the write lock) has begun
            with db.session(readonly=True) as inner:
                assert inner.get(Channel, "global") is not None
            with pytest.raises(RuntimeError, match="readonly"), db.session():
                pass
        with db.session() as again:  # the guard is released with the session
            assert again.get(Channel, "global") is not None
    finally:
        db.dispose()


# -- the real Enroll RPC: losers get a clear refusal and no credential ------------------------------

async def _enroll_rpc(address: str, ca_pem: bytes, token: str) -> tuple[str, Any]:
    _, csr_pem = make_tls_key_and_csr()
    _, nats_public = make_nats_user_seed()
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    async with grpc.aio.secure_channel(address, creds) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
        try:
            reply = await stub.Enroll(enrollment_pb2.EnrollRequest(
                token=token, csr_pem=csr_pem, nats_public_key=nats_public, agent_version="race"
            ), timeout=60)
        except grpc.aio.AioRpcError as exc:
            return "refused", exc
    return nats_public, reply


async def test_concurrent_enroll_rpcs_hand_out_one_credential(db_url: str, tmp_path: Path) -> None:
    from cryptography import x509

    ctl = await start_controller(controller_settings(tmp_path, db_url), tmp_path)
    try:
        await ctl.op.create_tenant("acme")
        ca_pem = (ctl.settings.pki_dir / "ca.crt").read_bytes()
        service = ctl.app.service
        assert service is not None
        for round_ in range(4):
            token = await ctl.op.add_gateway("acme", f"gw{round_}")
            outcomes = await asyncio.gather(*(_enroll_rpc(ctl.op.address, ca_pem, token) for _ in range(6)))
            won = [(key, reply) for key, reply in outcomes if key != "refused"]
            lost = [exc for key, exc in outcomes if key == "refused"]
            assert len(won) == 1, f"round {round_}: {len(won)} credentials handed out"
            assert all(exc.code() == grpc.StatusCode.UNAUTHENTICATED and "already used" in exc.details()
                       for exc in lost), [exc.details() for exc in lost]
            key, reply = won[0]
            assert reply.nats_user_jwt and reply.client_cert_pem
            serial = format(x509.load_pem_x509_certificate(reply.client_cert_pem).serial_number, "x")
            gateway = service.get_gateway("acme", f"gw{round_}")
            assert (gateway.status, gateway.cert_serial) == ("enrolled", serial)
            assert _gateway_row(service.db, gateway.id)[2] == key
    finally:
        await ctl.op.close()
        await ctl.app.stop()
