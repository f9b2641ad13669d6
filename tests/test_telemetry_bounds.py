"""Telemetry a gateway cannot bend: its period is bounded (no back-dating into 1970, a closed billing
month or before enrollment, no 57-year batches, no far future), and its message id cannot be guessed
by another gateway to pre-empt its batches in the broker's duplicate window. Real nats-server, real
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from controller.store.db import Database
from controller.store.models import Gateway, Tenant
from controller.telemetry import queries
from controller.telemetry.bounds import (
    BILLING_CLOSE_DAYS,
    MAX_SKEW_MS,
    BatchRejected,
    EnrollmentTimes,
    NotEnrolled,
    PeriodRefused,
    check_period,
    open_since_ms,
)
from controller.telemetry.consumer import STREAM, TelemetryConsumer
from controller.telemetry.consumer_state import chunk_enrollment
from controller.telemetry.models import TelemetryBatchSeen, UsageDaily
from controller.telemetry.validate import validate_batch
from gateway_agent.counters import CounterSample
from gateway_agent.telemetry.collector import TelemetryCollector
from gateway_agent.telemetry.publisher import MSG_ID_HEADER, TelemetryPublisher, batch_subject, msg_id
from gateway_agent.telemetry.spool import TelemetrySpool
from mssp.common.metrics import HOST_EGRESS
from mssp.common.telemetry_bounds import MAX_PERIOD_MS
from mssp.v1 import telemetry_pb2
from tests.support.nats import NatsBroker
from tests.support.waiting import eventually

TA = "tenantA"
MIN = 60_000


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


# A fixed controller clock: March 10th, so February closed on March 3rd.
NOW = ms(2026, 3, 10, 12, 0)
ENROLLED = NOW - 3600_000  # gw1 enrolled an hour ago


def batch(gateway: str, seq: int, start: int, end: int, nbytes: int = 100) -> telemetry_pb2.TelemetryBatch:
    b = telemetry_pb2.TelemetryBatch(gateway_id=gateway, tenant_id=TA, batch_seq=seq,
                                     period_start_ms=start, period_end_ms=end)
    b.records.add(metric=HOST_EGRESS, dimension="192.0.2.10", packets=1, bytes=nbytes)
    return b


# ---- the rules (pure) --------------------------------------------------------------------------


def test_a_month_closes_days_after_it_ends() -> None:
    assert BILLING_CLOSE_DAYS == 2
    assert open_since_ms(ms(2026, 3, 10)) == ms(2026, 3, 1)
    assert open_since_ms(ms(2026, 3, 3, 0, 0)) == ms(2026, 3, 1)  # February closed at this instant
    assert open_since_ms(ms(2026, 3, 2, 23, 59)) == ms(2026, 2, 1)  # ... not a minute before
    assert open_since_ms(ms(2026, 1, 1, 8)) == ms(2025, 12, 1)  # across the year


REFUSED = {
    "1970, 57 years online": (1000, NOW),
    "1970, short": (1000, 31_000),
    "longer than MAX_PERIOD_MS": (NOW - MAX_PERIOD_MS - 1, NOW),
    "into a closed month": (ms(2026, 2, 27, 12), ms(2026, 2, 27, 12) + 30_000),
    "ends in the future": (NOW + 2 * MAX_SKEW_MS, NOW + 2 * MAX_SKEW_MS + 30_000),
    "before enrollment": (ENROLLED - MAX_SKEW_MS - 60_000, ENROLLED - MAX_SKEW_MS - 30_000),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_impossible_periods_are_refused(case: str) -> None:
    start, end = REFUSED[case]
    with pytest.raises(PeriodRefused) as info:
        check_period(start, end, NOW, ENROLLED)
    assert str(info.value)


def test_possible_periods_pass() -> None:
    check_period(NOW - 30_000, NOW, NOW, ENROLLED)
    check_period(NOW - MAX_PERIOD_MS, NOW, NOW, ENROLLED)  # the longest
    check_period(NOW, NOW + MAX_SKEW_MS, NOW, None)  # a clock a little ahead
    check_period(ENROLLED - MAX_SKEW_MS, ENROLLED, ENROLLED + MIN, ENROLLED)  # a clock a little behind
    check_period(ms(2026, 2, 28, 23, 59), ms(2026, 3, 1), ms(2026, 3, 2, 12), None)  # Feb still open
    with pytest.raises(BatchRejected):
        check_period(0, NOW, NOW)
    with pytest.raises(BatchRejected):
        check_period(NOW, NOW - 1, NOW)


def test_the_agent_never_makes_a_longer_period(tmp_path: Path) -> None:
    """A router whose clock stepped forward by hours (NTP after boot) or that was suspended."""
    collector = TelemetryCollector(tmp_path / "c", tenant_id=TA, gateway_id="gw1")
    end = collector.state.period_end_ms + 10 * 3600_000
    made = collector.collect(now_ms=end).batch
    assert made.period_end_ms - made.period_start_ms == MAX_PERIOD_MS
    check_period(made.period_start_ms, made.period_end_ms, end)


# ---- through the stream, into the database ----------------------------------------------------


def add_gateway(db: Database, gateway_id: str, enrolled_at_ms: int) -> None:
    with db.session() as s:
        if s.get(Tenant, TA) is None:
            s.add(Tenant(id=TA, name="acme", plan="standard", created_at_ms=ENROLLED))
            s.flush()
        s.add(Gateway(id=gateway_id, tenant_id=TA, name=gateway_id, status="enrolled",
                      created_at_ms=enrolled_at_ms, enrolled_at_ms=enrolled_at_ms))


def seen_and_usage(db: Database) -> tuple[list[tuple[str, int]], list[tuple[str, str, int, int]]]:
    seen_t, usage_t = TelemetryBatchSeen.__table__, UsageDaily.__table__  # type: ignore[attr-defined]
    with db.engine.connect() as conn:
        rows = conn.execute(select(seen_t).order_by(seen_t.c.batch_seq))
        seen = [(r.gateway_id, r.batch_seq) for r in rows]
        usage = [(r.gateway_id, r.day, r.online, r.bytes) for r in conn.execute(select(usage_t))]
    return seen, usage


async def test_back_dated_batches_are_dropped_counted_and_change_nothing(
    nats_broker: NatsBroker, db: Database
) -> None:
    add_gateway(db, "gw1", ENROLLED)
    nc = await nats_broker.connect_controller()
    consumer = TelemetryConsumer(db, nc, enrolled_at=EnrollmentTimes(db), clock_ms=lambda: NOW,
                                 fetch_timeout=0.3, ack_wait=1.0, linger=0.05)
    await consumer.start()
    try:
        gws = {g: await nats_broker.connect_gateway(TA, g) for g in ("gw1", "gw3")}

        async def send(b: telemetry_pb2.TelemetryBatch, nonce: str = "n") -> None:
            js = gws[b.gateway_id].jetstream(timeout=5)
            await js.publish(batch_subject(TA, b.gateway_id), b.SerializeToString(),
                             headers={MSG_ID_HEADER: msg_id(b.gateway_id, b.batch_seq, nonce)})

        refused = [batch("gw1", 20 + i, start, end, nbytes=10**9) for i, (start, end) in
                   enumerate(REFUSED[case] for case in sorted(REFUSED))]  # 1970, closed month, ...
        refused.append(batch("gw3", 30, NOW - 30_000, NOW, nbytes=10**9))  # not a gateway of the fleet
        good = batch("gw1", 1, NOW - 30_000, NOW)
        for b in refused:
            await send(b)
        await send(good)

        async def settled() -> bool:
            return consumer.stats.received >= len(refused) + 1 and await consumer.lag() == 0

        await eventually(settled)
        assert consumer.stats.out_of_bounds == len(refused) == consumer.stats.rejected
        assert consumer.stats.batches == 1
        assert "gw3" in consumer.stats.last_rejection and "not enrolled" in consumer.stats.last_rejection
        # Nothing of theirs reached the database: no idempotency row, no usage, no online time.
        seen, usage = await asyncio.to_thread(seen_and_usage, db)
        assert seen == [("gw1", 1)]
        assert usage == [("gw1", "2026-03-10", 30, 100)]
        assert (await asyncio.to_thread(queries.usage, db, TA, "2026-02")).gateways == []
        assert (await asyncio.to_thread(queries.usage, db, TA, "1970-01")).gateways == []
        # Terminated, not redelivered: the stream holds them but nobody is handed them again.
        info = await nc.jetstream().consumer_info(STREAM, consumer.durable)
        assert info.num_redelivered == 0 and info.num_ack_pending == 0
        # A refusal leaves no trace: the same seq with a possible period still counts.
        await send(batch("gw1", 20, NOW - 30_000, NOW, nbytes=7), nonce="retry")

        async def counted() -> bool:
            return consumer.stats.batches == 2 and await consumer.lag() == 0

        await eventually(counted)
        assert sorted((await asyncio.to_thread(seen_and_usage, db))[0]) == [("gw1", 1), ("gw1", 20)]
    finally:
        await consumer.stop()


def test_enrollment_times_are_read_once_and_unknown_gateways_refused(db: Database) -> None:
    add_gateway(db, "gw1", ENROLLED)
    times = EnrollmentTimes(db)
    assert times("gw1") == ENROLLED and times("nobody") is None
    b = batch("nobody", 1, NOW - 30_000, NOW)
    with pytest.raises(NotEnrolled):
        validate_batch(batch_subject(TA, "nobody"), b.SerializeToString(), NOW, enrolled_at=times)
    with db.session() as s:  # a cached value survives the row (it only ever moves later)
        gw = s.get(Gateway, "gw1")
        assert gw is not None
        gw.enrolled_at_ms = NOW
    assert times("gw1") == ENROLLED
    ok = batch("gw1", 1, NOW - 30_000, NOW)
    assert validate_batch(batch_subject(TA, "gw1"), ok.SerializeToString(), NOW, enrolled_at=times) == ok


def test_a_chunks_enrollment_times_take_one_query(db: Database) -> None:
    """After a restart a chunk from many uncached gateways costs one query, not one per batch."""
    for g in ("gw1", "gw2"):
        add_gateway(db, g, ENROLLED)
    queries_seen: list[str] = []

    def listen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):  # not SQLite's BEGIN
            queries_seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        times = EnrollmentTimes(db)
        subjects = [batch_subject(TA, g) for g in ("gw1", "gw2", "nobody", "gw1")] + ["not.a.subject"]
        known = chunk_enrollment(times, subjects)
        assert known is not None
        assert (known("gw1"), known("gw2"), known("nobody")) == (ENROLLED, ENROLLED, None)
        assert len(queries_seen) == 1 and "gateway" in queries_seen[0].lower()
        again = chunk_enrollment(times, subjects)  # cached, the unknown one for miss_ttl too
        assert again is not None and again("gw2") == ENROLLED and len(queries_seen) == 1
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)


# ---- message ids -------------------------------------------------------------------------------


class Counters:
    def __init__(self) -> None:
        self.bytes = 0

    def read_counters(self) -> list[CounterSample]:
        return [CounterSample(HOST_EGRESS, "192.0.2.10", 1, self.bytes)]


def test_spool_keeps_one_nonce_per_batch_and_reads_old_files(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "spool")
    spool.append(1, b"one")
    spool.append(2, b"one")
    first = spool.read_entry(1)
    assert first is not None and len(first.nonce) == 32
    again = TelemetrySpool(tmp_path / "spool").read_entry(1)  # after a restart: the same id
    assert again == first
    other = spool.read_entry(2)
    assert other is not None and other.nonce != first.nonce  # same payload, another batch
    # A batch spooled by an agent from before the nonce (magic MSP1): still sent, with a stable id.
    old_format = struct.pack(">4sI", b"MSP1", zlib.crc32(b"x")) + b"x"
    (tmp_path / "spool" / f"{3:020d}.batch").write_bytes(old_format)
    legacy = TelemetrySpool(tmp_path / "spool").read_entry(3)
    assert legacy is not None and legacy.payload == b"x"
    assert legacy.nonce == hashlib.sha256(b"x").digest()[:16].hex()
    # A flipped nonce bit is corruption like any other.
    path = tmp_path / "spool" / f"{1:020d}.batch"
    data = bytearray(path.read_bytes())
    data[8] ^= 1
    path.write_bytes(bytes(data))
    reopened = TelemetrySpool(tmp_path / "spool")
    assert reopened.read_entry(1) is None and reopened.corrupt == 1


async def test_another_gateway_cannot_preempt_a_batch_by_its_id(
    nats_broker: NatsBroker, db: Database, tmp_path: Path
) -> None:
    """gwX knows gwY's id and next seq, and publishes first with every id it could guess (the old
    "<gateway>:<seq>" one included), on its own subject and on gwY's. gwY's real batch still counts."""
    nc = await nats_broker.connect_controller()
    consumer = TelemetryConsumer(db, nc, fetch_timeout=0.3, ack_wait=2.0, linger=0.05)
    await consumer.start()
    try:
        y_nc = await nats_broker.connect_gateway(TA, "gwY")
        online = [False]
        counters = Counters()
        collector = TelemetryCollector(tmp_path / "y", tenant_id=TA, gateway_id="gwY", source=counters)
        spool = TelemetrySpool(tmp_path / "y" / "spool")
        y = TelemetryPublisher(collector, spool, lambda: y_nc if online[0] else None, interval=3600)
        counters.bytes = 5000
        seq = await y.tick()  # made and spooled while offline
        made = telemetry_pb2.TelemetryBatch.FromString(spool.read(seq) or b"")

        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        x_nc = await nats_broker.connect_gateway(TA, "gwX", error_cb=on_error)
        xjs = x_nc.jetstream(timeout=2.0)
        guesses = [f"gwY:{seq}", f"gwY-{seq}", f"gwY:{seq}:", f"gwY:{seq}:{0:032x}"]
        for i, guess in enumerate(guesses):
            own = batch("gwX", seq + i, made.period_start_ms, made.period_end_ms, nbytes=1)
            ack = await xjs.publish(batch_subject(TA, "gwX"), own.SerializeToString(),
                                    headers={MSG_ID_HEADER: guess})
            assert ack.duplicate is not True
        forged = telemetry_pb2.TelemetryBatch()
        forged.CopyFrom(made)
        forged.records[0].bytes = 1
        with pytest.raises(Exception):  # noqa: B017  no PubAck: the broker refuses gwY's subject to gwX
            await xjs.publish(batch_subject(TA, "gwY"), forged.SerializeToString(),
                              headers={MSG_ID_HEADER: f"gwY:{seq}"})
        # ... and gwY's identity claimed on gwX's own subject is refused by the controller.
        await xjs.publish(batch_subject(TA, "gwX"), forged.SerializeToString(),
                          headers={MSG_ID_HEADER: "forged"})

        online[0] = True
        assert await y.drain() == 1
        assert y.stats.published == 1 and y.stats.duplicates == 0  # the broker stored it as new

        async def counted() -> bool:
            return await consumer.lag() == 0 and consumer.stats.received >= len(guesses) + 2

        await eventually(counted)
        totals = await asyncio.to_thread(queries.totals, db)
        assert totals[("gwY", HOST_EGRESS, "192.0.2.10")] == (1, 5000, 0)
        assert totals[("gwX", HOST_EGRESS, "192.0.2.10")] == (len(guesses), len(guesses), 0)
        assert consumer.stats.rejected == 1 and "gwY" in consumer.stats.last_rejection
        assert any("permissions violation" in e for e in errors)
    finally:
        await consumer.stop()


async def test_a_replayed_batch_keeps_its_id_and_is_dropped_by_the_broker(
    nats_broker: NatsBroker, db: Database, tmp_path: Path
) -> None:
    """The PubAck was lost: the agent sends the batch again (same spooled nonce, same id)."""
    nc = await nats_broker.connect_controller()
    consumer = TelemetryConsumer(db, nc, fetch_timeout=0.3, ack_wait=2.0, linger=0.05)
    await consumer.start()
    try:
        y_nc = await nats_broker.connect_gateway(TA, "gwY")
        counters = Counters()
        collector = TelemetryCollector(tmp_path / "y", tenant_id=TA, gateway_id="gwY", source=counters)
        spool = TelemetrySpool(tmp_path / "y" / "spool")
        online = [False]
        y = TelemetryPublisher(collector, spool, lambda: y_nc if online[0] else None, interval=3600)
        counters.bytes = 700
        seq = await y.tick()
        entry = spool.read_entry(seq)
        assert entry is not None
        # The first send reached the broker, its ack did not reach the agent (the batch stays spooled).
        first = await y_nc.jetstream(timeout=5).publish(
            batch_subject(TA, "gwY"), entry.payload, headers={MSG_ID_HEADER: msg_id("gwY", seq, entry.nonce)}
        )
        assert first.duplicate is not True
        # The agent restarts and replays its spool.
        spool = TelemetrySpool(tmp_path / "y" / "spool")
        online[0] = True
        y = TelemetryPublisher(collector, spool, lambda: y_nc if online[0] else None, interval=3600)
        assert await y.drain() == 1
        assert y.stats.duplicates == 1 and y.stats.published == 0

        async def counted() -> bool:
            return await consumer.lag() == 0 and consumer.stats.batches == 1

        await eventually(counted)
        async def removed() -> bool:  # consumed, so gone (interest retention)
            return (await nc.jetstream().stream_info(STREAM)).state.messages == 0

        await eventually(removed)
        assert (await nc.jetstream().stream_info(STREAM)).state.last_seq == 1  # it was stored once
        totals = await asyncio.to_thread(queries.totals, db)
        assert totals == {("gwY", HOST_EGRESS, "192.0.2.10"): (1, 700, 0)}
    finally:
        await consumer.stop()


def test_seen_rows_are_per_gateway(db: Database) -> None:
    """The controller's idempotency key is (gateway from the broker's subject, seq): gwX's seq 5 is not
    gwY's seq 5."""
    from controller.telemetry.ingest import ingest

    now = NOW
    x = validate_batch(batch_subject(TA, "gwX"), batch("gwX", 5, now - 30_000, now).SerializeToString(), now)
    y = validate_batch(batch_subject(TA, "gwY"), batch("gwY", 5, now - 30_000, now).SerializeToString(), now)
    assert ingest(db, [x], now_ms=now).new == 1
    assert ingest(db, [y], now_ms=now).new == 1
    seen_t = TelemetryBatchSeen.__table__  # type: ignore[attr-defined]
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(seen_t)).scalar() == 2
