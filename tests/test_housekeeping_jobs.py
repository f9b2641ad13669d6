"""The controller's housekeeping jobs run from the loop on a real SQLite and PostgreSQL (and a real
nats-server for IOC expiry): IOC expiry still publishes its removal, the push log is pruned and a
resync still works afterwards, telemetry retention runs, and expired enrollment tokens are deleted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import col, func, select

from controller.config import Settings
from controller.housekeeping import Housekeeper, controller_jobs
from controller.push_publisher import PushPublisher
from controller.service import ControllerService
from controller.store.db import Database
from controller.store.models import EnrollmentToken, PushLog
from controller.telemetry.bounds import MAX_AGE_MS
from controller.telemetry.ingest import ingest
from controller.telemetry.models import TelemetryBatchSeen
from gateway_agent.state import DesiredState
from mssp.common.channels import GLOBAL_CHANNEL, channel_subject, tenant_channel
from mssp.common.clock import now_ms
from mssp.common.envelope import open_envelope
from mssp.v1 import common_pb2
from tests.support.nats import NatsBroker
from tests.support.telemetry_batches import NOW, make_batch

SLOW = 3600.0  # a job that must not get in the way: it runs once, at start


@pytest.fixture
def svc(db: Database) -> ControllerService:
    return ControllerService(db, token_ttl_seconds=3600)


def settings(tmp_path: Path, **periods: float) -> Settings:
    values: dict[str, Any] = {
        "housekeeping_ioc_expiry_seconds": SLOW, "housekeeping_push_log_seconds": SLOW,
        "housekeeping_telemetry_seconds": SLOW, "housekeeping_tokens_seconds": SLOW,
        "housekeeping_feeds_seconds": SLOW, "housekeeping_decay_seconds": SLOW,
    }
    return Settings(data_dir=tmp_path, **(values | periods))


@asynccontextmanager
async def running(keeper: Housekeeper) -> AsyncIterator[Housekeeper]:
    await keeper.start()
    try:
        yield keeper
    finally:
        await keeper.stop()


async def eventually(condition: Callable[[], bool], within: float = 60.0) -> None:
    """Poll a blocking check in a thread until true (a deadline for hangs, not a timing assertion)."""
    async with asyncio.timeout(within):
        while True:
            if await asyncio.to_thread(condition):
                return
            await asyncio.sleep(0.05)


def count(db: Database, model: Any, *where: Any) -> int:
    with db.session(readonly=True) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def test_the_controller_runs_every_job(tmp_path: Path, svc: ControllerService, db: Database) -> None:
    jobs = controller_jobs(svc, db, settings(tmp_path, housekeeping_ioc_expiry_seconds=1.0),
                           on_iocs_expired=lambda: None)
    assert {j.name: j.period for j in jobs} == {
        "ioc-expiry": 1.0, "push-log-prune": SLOW, "telemetry-retention": SLOW, "enrollment-tokens": SLOW,
        "feeds": SLOW, "ioc-decay": SLOW,
    }
    defaults = Settings(data_dir=tmp_path)
    assert defaults.housekeeping_ioc_expiry_seconds <= 1.0  # removal pushes go out promptly
    assert defaults.enrollment_token_grace_seconds > 0


async def test_ioc_expiry_still_publishes_the_removal(
    nats_broker: NatsBroker, db: Database, svc: ControllerService, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    nc = await nats_broker.connect_controller()
    listener = await nats_broker.connect_controller()
    removed: list[str] = []

    async def on_push(msg: Any) -> None:
        push = open_envelope(key.public_key(), msg.data, {GLOBAL_CHANNEL})
        removed.extend(i.value for i in push.iocs.remove)

    await listener.subscribe(channel_subject(GLOBAL_CHANNEL), cb=on_push)
    await listener.flush()
    publisher = PushPublisher(svc, nc, key, beacon_interval=SLOW)
    jobs = controller_jobs(svc, db, settings(tmp_path, housekeeping_ioc_expiry_seconds=0.2),
                           on_iocs_expired=publisher.wake)
    publisher.start()
    try:
        async with running(Housekeeper(db, jobs)) as keeper:
            await asyncio.to_thread(svc.add_ioc, "198.51.100.7", ttl_seconds=1)
            await asyncio.to_thread(svc.add_ioc, "198.51.100.8")
            publisher.wake()
            await eventually(lambda: removed == ["198.51.100.7"])
        assert keeper.stats["ioc-expiry"].removed == 1
        assert [i.ioc.value for i in await asyncio.to_thread(svc.list_iocs)] == ["198.51.100.8"]
        await eventually(lambda: svc.unpublished_outbox() == [])
    finally:
        await publisher.stop()


async def test_the_push_log_is_pruned_and_resyncs_still_work(
    db: Database, svc: ControllerService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    acme = await asyncio.to_thread(svc.create_tenant, "acme")

    def changes() -> None:
        svc.set_policy("acme", "default_action: deny\nrules: []\n")
        for i in range(5):
            svc.add_ioc(f"198.51.100.{i + 1}")
        svc.add_ioc("evil.example.com", "tenant:acme")
        svc.remove_ioc("198.51.100.1")
        svc.mark_published([row_id for row_id, _ in svc.unpublished_outbox()])

    await asyncio.to_thread(changes)
    before = count(db, PushLog)
    jobs = controller_jobs(svc, db, settings(tmp_path, housekeeping_push_log_seconds=0.2),
                           on_iocs_expired=lambda: None, push_log_keep=1)
    with caplog.at_level("INFO", logger="mssp.controller.housekeeping"):
        async with running(Housekeeper(db, jobs)) as keeper:
            await eventually(lambda: count(db, PushLog) < before)
            await eventually(lambda: keeper.stats["push-log-prune"].runs >= 2)  # and again: nothing left
    assert count(db, PushLog) == 2  # the newest delta of each channel
    assert keeper.stats["push-log-prune"].removed == before - 2
    assert "housekeeping push-log-prune: removed" in caplog.text

    # An agent behind the pruned deltas gets a snapshot that brings it to the head.
    snap = await asyncio.to_thread(svc.sync_pushes, acme.id, common_pb2.Versions(global_seq=4, tenant_seq=0))
    state = DesiredState(tenant_channel(acme.id))
    for push in snap:
        assert push.WhichOneof("body") == "snapshot"
        state.apply(push)
    assert state.versions() == common_pb2.Versions(global_seq=6, tenant_seq=2)
    assert {i.value for i in state.live_iocs()} == {f"198.51.100.{i}" for i in (2, 3, 4, 5)} | {
        "evil.example.com"}
    # One just behind the head still gets the delta itself.
    behind = common_pb2.Versions(global_seq=5, tenant_seq=2)
    deltas = await asyncio.to_thread(svc.sync_pushes, acme.id, behind)
    assert [(p.channel, p.seq, p.WhichOneof("body")) for p in deltas] == [(GLOBAL_CHANNEL, 6, "iocs")]


async def test_telemetry_retention_runs_from_the_loop(
    db: Database, svc: ControllerService, tmp_path: Path
) -> None:
    old = make_batch(seq=1, end_ms=NOW - MAX_AGE_MS + 3600_000)
    new = make_batch(seq=2)
    await asyncio.to_thread(ingest, db, [old, new], now_ms=NOW)

    def later() -> int:  # a controller running MAX_AGE_MS from now: the old batch's row may go
        return now_ms() + MAX_AGE_MS

    jobs = controller_jobs(svc, db, settings(tmp_path, housekeeping_telemetry_seconds=0.2),
                           on_iocs_expired=lambda: None, clock_ms=later)
    async with running(Housekeeper(db, jobs, clock_ms=later)) as keeper:
        await eventually(lambda: count(db, TelemetryBatchSeen) == 1)
    assert count(db, TelemetryBatchSeen, col(TelemetryBatchSeen.batch_seq) == 2) == 1
    assert keeper.stats["telemetry-retention"].removed >= 1


async def test_expired_enrollment_tokens_are_deleted_after_the_grace(
    db: Database, svc: ControllerService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(svc.create_tenant, "acme")
    short, _, _ = await asyncio.to_thread(svc.add_gateway, "acme", "gw1", token_ttl_seconds=1)
    await asyncio.to_thread(svc.add_gateway, "acme", "gw2")  # an hour: stays
    await eventually(lambda: now_ms() > _expiry(db, short.id))

    def later() -> int:
        return now_ms() + 60_000

    kept = settings(tmp_path, housekeeping_tokens_seconds=0.2, enrollment_token_grace_seconds=3600)
    jobs = controller_jobs(svc, db, kept, on_iocs_expired=lambda: None, clock_ms=later)
    async with running(Housekeeper(db, jobs, holder="graceful")) as keeper:
        await eventually(lambda: keeper.stats["enrollment-tokens"].runs >= 1)
    assert count(db, EnrollmentToken) == 2  # expired, but within its grace

    gone = settings(tmp_path, housekeeping_tokens_seconds=0.2, enrollment_token_grace_seconds=30)
    jobs = controller_jobs(svc, db, gone, on_iocs_expired=lambda: None, clock_ms=later)
    with caplog.at_level("INFO", logger="mssp.controller.housekeeping"):
        async with running(Housekeeper(db, jobs, holder="graceful")):  # the same controller, restarted
            await eventually(lambda: count(db, EnrollmentToken) == 1)
    assert count(db, EnrollmentToken, col(EnrollmentToken.gateway_id) == short.id) == 0
    assert "housekeeping enrollment-tokens: removed 1 expired enrollment tokens" in caplog.text


def _expiry(db: Database, gateway_id: str) -> int:
    with db.session(readonly=True) as s:
        token = s.exec(select(EnrollmentToken).where(col(EnrollmentToken.gateway_id) == gateway_id)).one()
        return int(token.expires_at_ms)
