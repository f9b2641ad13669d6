"""The telemetry consumer on a real nats-server and SQLite/PostgreSQL: double publish, replay, a
controller dying between commit and ack, database faults, malformed batches and two controllers on
one durable all leave every batch counted exactly once; stream and consumer setup is idempotent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api
from sqlalchemy.exc import OperationalError

from controller.store.db import Database
from controller.telemetry import consumer as consumer_module
from controller.telemetry import queries
from controller.telemetry.consumer import Outcome, TelemetryConsumer
from gateway_agent.telemetry.publisher import batch_subject, msg_id
from mssp.common.metrics import HOST_EGRESS
from mssp.v1 import push_pb2, telemetry_pb2
from tests.support.nats import NatsBroker
from tests.support.telemetry_batches import NOW, TA, TB, Totals, expected, make_batch, subject_of
from tests.support.waiting import eventually


async def db_totals(db: Database) -> Totals:
    return await asyncio.to_thread(queries.totals, db)


async def start_consumer(
    broker: NatsBroker, db: Database, cls: type[TelemetryConsumer] = TelemetryConsumer, **kw: Any
) -> tuple[TelemetryConsumer, NatsClient]:
    nc = await broker.connect_controller(max_reconnect_attempts=-1)
    kw.setdefault("fetch_timeout", 0.3)
    kw.setdefault("linger", 0.05)
    consumer = cls(db, nc, **kw)
    await consumer.start()
    return consumer, nc


async def drained(consumer: TelemetryConsumer) -> bool:
    return await consumer.lag() == 0


async def publish(gw: NatsClient, batch: telemetry_pb2.TelemetryBatch, message_id: str | None = None) -> Any:
    js = gw.jetstream(timeout=5)
    headers = {"Nats-Msg-Id": message_id or msg_id(batch.gateway_id, batch.batch_seq, "test-nonce")}
    return await js.publish(subject_of(batch), batch.SerializeToString(), headers=headers)


async def test_double_publish_and_replay_count_once(nats_broker: NatsBroker, db: Database) -> None:
    consumer, _ = await start_consumer(nats_broker, db)
    try:
        gw = await nats_broker.connect_gateway(TA, "gw1")
        batches = [make_batch(seq=s) for s in range(1, 6)]
        for b in batches:
            await publish(gw, b)
        again = await publish(gw, batches[2])  # lost PubAck, re-sent within the window
        assert again.duplicate is True
        await publish(gw, batches[3], message_id="replayed-after-window")  # the broker cannot tell
        await eventually(lambda: drained(consumer))
        assert await db_totals(db) == expected(batches)
        assert consumer.stats.batches == 5 and consumer.stats.duplicates == 1
    finally:
        await consumer.stop()


class DiesAfterCommit(TelemetryConsumer):
    """A controller that commits, then dies before its acks leave (the acks are simply never sent)."""

    committed = 0

    async def _settle(self, msgs: list[Msg], outcomes: list[Outcome]) -> None:
        self.committed += sum(o is Outcome.DONE for o in outcomes)


async def test_controller_killed_between_commit_and_ack(nats_broker: NatsBroker, db: Database) -> None:
    gw = await nats_broker.connect_gateway(TA, "gw1")
    dying, dying_nc = await start_consumer(nats_broker, db, DiesAfterCommit, ack_wait=1.0)
    survivor = None
    try:
        batches = [make_batch(seq=s) for s in range(1, 9)]
        for b in batches:
            await publish(gw, b)

        async def all_committed() -> bool:
            return await db_totals(db) == expected(batches)

        await eventually(all_committed)
        await dying_nc.close()  # the process is gone: no acks, no more fetches
        await dying.stop()

        survivor, _ = await start_consumer(nats_broker, db, ack_wait=1.0)

        async def redelivered() -> bool:
            return survivor.stats.duplicates >= len(batches) and await drained(survivor)

        await eventually(redelivered)
        assert await db_totals(db) == expected(batches)
        assert survivor.stats.batches == 0  # everything it saw was already counted
    finally:
        await dying.stop()
        if survivor is not None:
            await survivor.stop()


async def test_transient_database_failure_is_retried_not_lost(
    nats_broker: NatsBroker, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = {"left": 2}
    real_ingest = consumer_module.ingest

    def flaky(*args: Any, **kw: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("INSERT ...", {}, Exception("server closed the connection"))
        return real_ingest(*args, **kw)

    monkeypatch.setattr(consumer_module, "ingest", flaky)
    consumer, _ = await start_consumer(nats_broker, db, retry_delay=0.1)
    try:
        gw = await nats_broker.connect_gateway(TA, "gw1")
        batches = [make_batch(seq=s) for s in range(1, 4)]
        for b in batches:
            await publish(gw, b)

        async def counted() -> bool:
            return await db_totals(db) == expected(batches) and await drained(consumer)

        await eventually(counted)
        assert consumer.stats.retries >= 1 and consumer.stats.rejected == 0
        assert consumer.stats.batches == 3
    finally:
        await consumer.stop()


async def test_malformed_batches_are_rejected_terminated_and_the_stream_flows(
    nats_broker: NatsBroker, db: Database
) -> None:
    consumer, nc = await start_consumer(nats_broker, db)
    try:
        gw = await nats_broker.connect_gateway(TA, "gw1")
        js = gw.jetstream(timeout=5)
        good: list[telemetry_pb2.TelemetryBatch] = []
        bad = [
            b"\xff\xfe garbage",
            push_pb2.Push(channel="global", seq=1).SerializeToString(),
            make_batch(seq=100, records=[(HOST_EGRESS, "h", 1, 10**16, 0)]).SerializeToString(),
            make_batch(seq=101, end_ms=NOW + 3600_000).SerializeToString(),
            make_batch("gw2", 1).SerializeToString(),  # gw1 claiming to be gw2 on its own subject
            make_batch("gw1", 1, tenant=TB).SerializeToString(),  # ... or to be in another tenant
        ]
        for i, payload in enumerate(bad):
            good.append(make_batch(seq=i + 1))
            await publish(gw, good[-1])
            await js.publish(batch_subject(TA, "gw1"), payload, headers={"Nats-Msg-Id": f"bad-{i}"})
        good.append(make_batch(seq=len(bad) + 1))
        await publish(gw, good[-1])

        async def settled() -> bool:
            return await drained(consumer) and consumer.stats.received >= len(bad) + len(good)

        await eventually(settled)
        assert await db_totals(db) == expected(good)  # nothing from the bad ones, everything else
        assert consumer.stats.rejected == len(bad)
        info = await nc.jetstream().consumer_info("TELEMETRY", "telemetry-ingest")
        assert (info.num_ack_pending, info.num_pending) == (0, 0)  # terminated: nothing comes back
        assert info.num_redelivered == 0
        assert {g for g, _, _ in await db_totals(db)} == {"gw1"}
    finally:
        await consumer.stop()


async def test_controllers_side_by_side_share_the_durable(nats_broker: NatsBroker, db: Database) -> None:
    one, _ = await start_consumer(nats_broker, db, fetch_batch=7)
    two, _ = await start_consumer(nats_broker, db, fetch_batch=7)
    try:
        gws = [await nats_broker.connect_gateway(TA, f"gw{g}") for g in range(3)]
        batches = [make_batch(f"gw{g}", s) for s in range(1, 41) for g in range(3)]
        await asyncio.gather(*(publish(gws[int(b.gateway_id[2:])], b) for b in batches))

        async def done() -> bool:
            return await db_totals(db) == expected(batches) and await drained(one)

        await eventually(done)
        assert one.stats.batches + two.stats.batches == len(batches)
        assert one.stats.received + two.stats.received >= len(batches)
    finally:
        await one.stop()
        await two.stop()


async def test_stream_and_consumer_setup_is_idempotent_and_follows_config(
    nats_broker: NatsBroker, tmp_path: Path
) -> None:
    """Every controller creates both at start; the second start (or a newer config) must not fail."""
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    first, nc = await start_consumer(nats_broker, db, ack_wait=30.0, duplicate_window=120.0)
    await first.stop()
    again = TelemetryConsumer(db, nc, ack_wait=5.0, duplicate_window=60.0)
    await again.ensure()
    await again.ensure()
    js = nc.jetstream()
    stream = await js.stream_info("TELEMETRY")
    assert stream.config.subjects == ["mssp.telemetry.>"]
    assert stream.config.storage == api.StorageType.FILE
    assert stream.config.duplicate_window == 60.0
    consumer = await js.consumer_info("TELEMETRY", "telemetry-ingest")
    assert consumer.config.ack_wait == 5.0
    assert consumer.config.ack_policy == api.AckPolicy.EXPLICIT
    db.dispose()
