"""Controller-side telemetry on SQLite and PostgreSQL: every batch counts exactly once (double publish,
redelivery, replay, a controller dying between commit and ack, two controllers racing), bad batches
are rejected, counted and terminated while the stream keeps flowing, and the read side adds up."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import typer
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api
from sqlalchemy import inspect, select
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel
from typer.testing import CliRunner

from controller.cli import telemetry as cli
from controller.cli.client import Options
from controller.domain.errors import InvalidInput, NotFound
from controller.grpc_api.operator import token_digest
from controller.grpc_api.telemetry import TelemetryServicer
from controller.pki import CertificateAuthority
from controller.store.db import Database
from controller.telemetry import consumer as consumer_module
from controller.telemetry import queries
from controller.telemetry.consumer import Outcome, TelemetryConsumer
from controller.telemetry.ingest import (
    MAX_AGE_MS,
    MAX_RECORDS,
    BatchRejected,
    ingest,
    purge,
    validate_batch,
)
from controller.telemetry.models import GatewayHealth, TelemetryBatchSeen
from gateway_agent.telemetry.publisher import batch_subject, msg_id
from mssp.common.metrics import CATEGORY_BYTES, DNS_BLOCKED, DNS_QUERIES, HOST_EGRESS, HOST_FLOWS, IOC_HITS
from mssp.v1 import push_pb2, telemetry_pb2, telemetry_pb2_grpc
from tests.support.nats import NatsBroker

TA, TB = "tenantA", "tenantB"
NOW = int(time.time() * 1000)
Totals = dict[tuple[str, str, str], tuple[int, int, int]]


def make_batch(
    gateway: str = "gw1",
    seq: int = 1,
    records: list[tuple[str, str, int, int, int]] | None = None,
    *,
    tenant: str = TA,
    end_ms: int | None = None,
    period_s: int = 30,
) -> telemetry_pb2.TelemetryBatch:
    end = NOW if end_ms is None else end_ms
    batch = telemetry_pb2.TelemetryBatch(
        gateway_id=gateway, tenant_id=tenant, batch_seq=seq,
        period_start_ms=end - period_s * 1000, period_end_ms=end,
    )
    batch.health.rss_bytes = 20_000_000
    batch.health.applied.tenant_seq = seq
    for metric, dim, packets, nbytes, count in records if records is not None else default_records(seq):
        batch.records.add(metric=metric, dimension=dim, packets=packets, bytes=nbytes, count=count)
    return batch


def default_records(seq: int) -> list[tuple[str, str, int, int, int]]:
    return [
        (HOST_EGRESS, "192.0.2.10", seq, 1000 * seq, 0),
        (HOST_EGRESS, "192.0.2.11", 1, 10, 0),
        (CATEGORY_BYTES, f"cloud-storage|192.0.2.{10 + seq % 3}", 2, 200 + seq, 0),
        (DNS_QUERIES, "files.storage.test|192.0.2.10", 0, 0, 3),
    ]


def expected(batches: list[telemetry_pb2.TelemetryBatch]) -> Totals:
    """What the agents measured: the sum of every distinct batch."""
    out: Totals = {}
    seen: set[tuple[str, int]] = set()
    for b in batches:
        if (b.gateway_id, b.batch_seq) in seen:
            continue
        seen.add((b.gateway_id, b.batch_seq))
        for r in b.records:
            key = (b.gateway_id, r.metric, r.dimension)
            p, n, c = out.get(key, (0, 0, 0))
            out[key] = (p + r.packets, n + r.bytes, c + r.count)
    return out


def subject_of(batch: telemetry_pb2.TelemetryBatch) -> str:
    return batch_subject(batch.tenant_id, batch.gateway_id)


def test_migration_creates_exactly_the_model_tables(db: Database) -> None:
    """0002_telemetry and controller/telemetry/models.py describe the same schema."""
    ours = {"telemetry_batch_seen", "rollup_hourly", "usage_daily", "category_daily",
            "telemetry_gateway_health", "detection_event"}
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    mine = [d for d in diffs if ours & set(_tables_in(d))]
    assert mine == []
    assert ours <= set(inspect(db.engine).get_table_names())


def _tables_in(diff: Any) -> list[str]:
    found = []
    for part in diff if isinstance(diff, list) else [diff]:
        for item in part if isinstance(part, tuple) else [part]:
            name = getattr(item, "name", None) if not isinstance(item, str) else item
            table = getattr(item, "table", None)
            found += [n for n in (name, getattr(table, "name", None)) if isinstance(n, str)]
    return found


# ---- validation (pure) -------------------------------------------------------------------------


def _forged(gateway: str, tenant: str) -> tuple[str, bytes]:
    return batch_subject(TA, "gw1"), make_batch(gateway, tenant=tenant).SerializeToString()


BAD_BATCHES: dict[str, tuple[str, bytes]] = {
    "garbage bytes": (batch_subject(TA, "gw1"), b"\xff\xfe not a protobuf \x00\x01"),
    "wrong schema": (batch_subject(TA, "gw1"), push_pb2.Push(channel="global", seq=7).SerializeToString()),
    "json": (batch_subject(TA, "gw1"), b'{"gateway_id": "gw1", "bytes": 5}'),
    "empty": (batch_subject(TA, "gw1"), b""),
    "another gateway": _forged("gw2", TA),
    "another tenant": _forged("gw1", TB),
    "absurd bytes": (batch_subject(TA, "gw1"), make_batch(records=[(HOST_EGRESS, "h", 1, 10**16, 0)])
                     .SerializeToString()),
    "negative": (batch_subject(TA, "gw1"), make_batch(records=[(HOST_EGRESS, "h", -1, 10, 0)])
                 .SerializeToString()),
    "future": (batch_subject(TA, "gw1"), make_batch(end_ms=NOW + 3600_000).SerializeToString()),
    "too old": (batch_subject(TA, "gw1"), make_batch(end_ms=NOW - MAX_AGE_MS - 60_000).SerializeToString()),
    "seq zero": (batch_subject(TA, "gw1"), make_batch(seq=0).SerializeToString()),
    "too many records": (batch_subject(TA, "gw1"), make_batch(
        records=[(HOST_EGRESS, f"h{i}", 1, 1, 0) for i in range(MAX_RECORDS + 1)]).SerializeToString()),
    "bad metric": (batch_subject(TA, "gw1"), make_batch(records=[("Robert'); DROP", "h", 1, 1, 0)])
                   .SerializeToString()),
    "not a telemetry subject": ("mssp.push.global", make_batch().SerializeToString()),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_bad_batches_are_rejected_with_a_reason(case: str) -> None:
    subject, data = BAD_BATCHES[case]
    with pytest.raises(BatchRejected) as info:
        validate_batch(subject, data, NOW)
    assert str(info.value)


def test_a_good_batch_passes_validation() -> None:
    batch = make_batch(records=[(HOST_EGRESS, "h", 1, 10**15, 0)])
    assert validate_batch(subject_of(batch), batch.SerializeToString(), NOW) == batch


# ---- folding (no broker) -----------------------------------------------------------------------


def test_same_batch_twice_counts_once(db: Database) -> None:
    b1, b2 = make_batch(seq=1), make_batch(seq=2)
    first = ingest(db, [b1, b1, b2])  # a duplicate inside one chunk
    assert (first.new, first.duplicates) == (2, 1)
    again = ingest(db, [b2, b1])  # ... and in a later chunk (redelivery, spool replay)
    assert (again.new, again.duplicates, again.rollup_rows) == (0, 2, 0)
    assert queries.totals(db) == expected([b1, b2])


def test_totals_equal_sums_sent_in_any_chunking(db: Database) -> None:
    batches = [make_batch(f"gw{g}", seq, tenant=TA if g % 2 else TB) for g in range(5) for seq in range(1, 8)]
    for size in (1, 3, 7, 20):  # the same batches, redelivered in different chunkings
        for i in range(0, len(batches), size):
            ingest(db, batches[i : i + size])
    assert queries.totals(db) == expected(batches)
    usage = queries.usage(db, TA, time.strftime("%Y-%m", time.gmtime(NOW / 1000)))
    assert sum(g.batches for g in usage.gateways) == 7 * 2  # gw1, gw3
    assert usage.egress_bytes == sum(
        r.bytes for b in batches if b.tenant_id == TA for r in b.records if r.metric == HOST_EGRESS
    )
    assert usage.gateway_days == 2


def test_racing_controllers_count_each_batch_once(db: Database) -> None:
    """Two controllers folding overlapping chunks at the same moment (late ack + redelivery)."""
    batches = [make_batch(f"gw{g}", seq) for g in range(4) for seq in range(1, 6)]
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def worker(chunk: list[telemetry_pb2.TelemetryBatch]) -> None:
        try:
            barrier.wait()
            ingest(db, chunk, attempts=10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(list(order),))
               for order in (batches, batches[::-1], batches[5:] + batches[:5])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert queries.totals(db) == expected(batches)


def test_upload_threshold_alerts_once_per_host_category_and_day(db: Database) -> None:
    def thresholds(tenant_id: str) -> list[tuple[str, int]]:
        return [("cloud-storage", 1000)] if tenant_id == TA else []

    def uploads(seq: int, host: str, nbytes: int, category: str = "cloud-storage") -> Any:
        return make_batch(records=[(CATEGORY_BYTES, f"{category}|{host}", 1, nbytes, 0)], seq=seq)

    assert ingest(db, [uploads(1, "192.0.2.10", 600)], thresholds).alerts == 0
    assert ingest(db, [uploads(2, "192.0.2.10", 500)], thresholds).alerts == 1  # 1100 > 1000 today
    assert ingest(db, [uploads(3, "192.0.2.10", 5000)], thresholds).alerts == 0  # already alerted today
    assert ingest(db, [uploads(4, "192.0.2.20", 999)], thresholds).alerts == 0  # another host, below
    assert ingest(db, [uploads(5, "192.0.2.20", 5000, "ai-tools")], thresholds).alerts == 0  # no threshold
    ingest(db, [uploads(2, "192.0.2.10", 500)], thresholds)  # a redelivery adds nothing
    found = queries.alerts(db, TA, 0, kind="upload_threshold")
    assert [(a.subject, a.host, a.gateway_id) for a in found] == [("cloud-storage", "192.0.2.10", "gw1")]
    assert found[0].details["bytes"] == 1100 and found[0].details["threshold"] == 1000
    assert queries.alerts(db, TB, 0) == []


def test_ioc_hits_become_one_event_per_ioc_host_and_day(db: Database) -> None:
    hits = [(IOC_HITS, "203.0.113.66|192.0.2.10", 3, 180, 0),
            (DNS_BLOCKED, "c2.evil.test|192.0.2.11", 0, 0, 2)]
    assert ingest(db, [make_batch(seq=1, records=hits)]).alerts == 2
    assert ingest(db, [make_batch(seq=2, records=hits)]).alerts == 0
    found = {(a.subject, a.host, a.details["via"]) for a in queries.alerts(db, TA, 0, kind="ioc_hit")}
    assert found == {("203.0.113.66", "192.0.2.10", "firewall"), ("c2.evil.test", "192.0.2.11", "dns")}
    top = queries.top(db, TA, "ioc", 0)
    assert [(t.key, t.packets, t.count) for t in top] == [("203.0.113.66", 6, 0), ("c2.evil.test", 0, 4)]


def test_health_keeps_the_newest_batch(db: Database) -> None:
    ingest(db, [make_batch(seq=5)])
    ingest(db, [make_batch(seq=3)])  # a late replay from the spool
    with db.engine.connect() as conn:
        row = conn.execute(select(GatewayHealth.__table__)).mappings().one()  # type: ignore[attr-defined]
    assert (row["batch_seq"], row["applied_tenant_seq"]) == (5, 5)


def test_top_and_usage_read_the_rollups(db: Database) -> None:
    ingest(db, [
        make_batch("gw1", 1, [
            (HOST_EGRESS, "192.0.2.10", 5, 5000, 0), (HOST_FLOWS, "192.0.2.10", 7, 0, 0),
            (DNS_QUERIES, "a.test|192.0.2.10", 0, 0, 9), (DNS_BLOCKED, "bad.test|192.0.2.10", 0, 0, 1),
            (DNS_QUERIES, "bad.test|192.0.2.10", 0, 0, 1), (CATEGORY_BYTES, "ai-tools|192.0.2.10", 2, 300, 0),
        ]),
        make_batch("gw2", 1, [
            (HOST_EGRESS, "192.0.2.10", 1, 9000, 0), (DNS_QUERIES, "a.test|192.0.2.50", 0, 0, 1),
            (CATEGORY_BYTES, "ai-tools|192.0.2.50", 1, 100, 0),
        ]),
        make_batch("gw9", 1, [(HOST_EGRESS, "192.0.2.99", 1, 10**9, 0)], tenant=TB),
    ])
    hosts = queries.top(db, TA, "host", NOW - 3600_000)
    assert [(h.key, h.gateway_id, h.bytes, h.count) for h in hosts] == [
        ("192.0.2.10", "gw2", 9000, 0), ("192.0.2.10", "gw1", 5000, 7),
    ]
    dests = queries.top(db, TA, "destination", NOW - 3600_000)
    assert [(d.key, d.count, d.blocked, len(d.hosts)) for d in dests] == [
        ("a.test", 10, 0, 2), ("bad.test", 1, 1, 1),
    ]
    cats = queries.top(db, TA, "category", NOW - 3600_000, limit=1)
    assert [(c.key, c.bytes, len(c.hosts)) for c in cats] == [("ai-tools", 400, 2)]
    assert queries.top(db, TA, "host", NOW + 2 * 3600_000) == []  # nothing since then
    month = time.strftime("%Y-%m", time.gmtime(NOW / 1000))
    usage = queries.usage(db, TA, month)
    rows = [(g.gateway_id, g.days_online, g.egress_bytes, g.batches, g.online_seconds)
            for g in usage.gateways]
    assert rows == [("gw1", 1, 5000, 1, 30), ("gw2", 1, 9000, 1, 30)]
    assert queries.usage(db, TA, "1999-01").gateways == []


@pytest.mark.parametrize("period", ["2025-13", "2025-1", "25-01", "", "2025-01-01"])
def test_bad_billing_periods_are_refused(period: str) -> None:
    with pytest.raises(InvalidInput):
        queries.parse_period(period)


def test_retention_purges_what_no_batch_can_match_any_more(db: Database) -> None:
    old = make_batch(seq=1, end_ms=NOW - MAX_AGE_MS + 3600_000)
    new = make_batch(seq=2)
    ingest(db, [old, new], now_ms=NOW)
    later = NOW + MAX_AGE_MS
    assert purge(db, now_ms=later)["seen"] == 1
    with db.engine.connect() as conn:
        seqs = [r.batch_seq for r in conn.execute(select(TelemetryBatchSeen.__table__))]  # type: ignore[attr-defined]
    assert seqs == [2]
    # The batch whose idempotency row is gone can no longer be accepted at all.
    with pytest.raises(BatchRejected):
        validate_batch(subject_of(old), old.SerializeToString(), later)


# ---- through the stream ------------------------------------------------------------------------


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    """Poll until true (a deadline for hangs, not a timing assertion)."""
    async with asyncio.timeout(within):
        for _ in iter(int, 1):
            if await condition():
                return
            await asyncio.sleep(0.05)


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


# ---- read side: TelemetryService and msspctl ---------------------------------------------------

TOKEN = "mssp_op_test-token"


def seed_read_side(db: Database) -> None:
    thresholds = {TA: [("cloud-storage", 100)]}
    ingest(db, [
        make_batch("gw1", 1, [(HOST_EGRESS, "192.0.2.10", 5, 5000, 0),
                              (CATEGORY_BYTES, "cloud-storage|192.0.2.10", 3, 900, 0),
                              (IOC_HITS, "203.0.113.66|192.0.2.10", 2, 120, 0)]),
        make_batch("gw9", 1, [(HOST_EGRESS, "192.0.2.99", 1, 10, 0)], tenant=TB),
    ], lambda t: thresholds.get(t, []))


class Names:
    def __init__(self) -> None:
        self.tenants = {"acme": TA, "globex": TB}

    def resolve(self, name: str) -> str:
        if name not in self.tenants:
            raise NotFound(f"unknown tenant {name!r}")
        return self.tenants[name]

    def tenant_names(self) -> dict[str, str]:
        return {v: k for k, v in self.tenants.items()}

    def gateway_names(self) -> dict[str, str]:
        return {"gw1": "branch-1", "gw9": "hq"}


async def serve_telemetry(db: Database, credentials: Any = None) -> tuple[grpc.aio.Server, str]:
    names = Names()
    server = grpc.aio.server()
    telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(
        TelemetryServicer(db, token_digest(TOKEN), resolve_tenant=names.resolve,
                          tenant_names=names.tenant_names, gateway_names=names.gateway_names),
        server,
    )
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_telemetry_service_needs_the_operator_token_and_answers(db: Database) -> None:
    await asyncio.to_thread(seed_read_side, db)
    server, address = await serve_telemetry(db)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)
            for metadata in ((), (("authorization", "Bearer wrong"),)):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Usage(telemetry_pb2.UsageRequest(tenant="acme"), metadata=metadata, timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            auth = (("authorization", f"Bearer {TOKEN}"),)

            top = await stub.Top(telemetry_pb2.TopRequest(tenant="acme"), metadata=auth, timeout=10)
            assert [(e.key, e.gateway, e.bytes) for e in top.entries] == [("192.0.2.10", "branch-1", 5000)]
            usage = await stub.Usage(telemetry_pb2.UsageRequest(tenant="acme"), metadata=auth, timeout=10)
            assert (usage.tenant_id, usage.gateway_days, usage.egress_bytes) == (TA, 1, 5000)
            every = await stub.ListAlerts(telemetry_pb2.ListAlertsRequest(), metadata=auth, timeout=10)
            assert {(a.tenant, a.kind, a.subject) for a in every.alerts} == {
                ("acme", "ioc_hit", "203.0.113.66"), ("acme", "upload_threshold", "cloud-storage"),
            }
            only_b = await stub.ListAlerts(telemetry_pb2.ListAlertsRequest(tenant="globex"), metadata=auth,
                                           timeout=10)
            assert list(only_b.alerts) == []

            invalid = grpc.StatusCode.INVALID_ARGUMENT
            bad = [
                (stub.Top, telemetry_pb2.TopRequest(tenant="nobody"), grpc.StatusCode.NOT_FOUND),
                (stub.Top, telemetry_pb2.TopRequest(tenant="acme", by="color"), invalid),
                (stub.Top, telemetry_pb2.TopRequest(), invalid),
                (stub.Top, telemetry_pb2.TopRequest(tenant="acme", since_seconds=-5), invalid),
                (stub.Usage, telemetry_pb2.UsageRequest(tenant="acme", period="2025-13"), invalid),
                (stub.ListAlerts, telemetry_pb2.ListAlertsRequest(kind="weird"), invalid),
            ]
            for method, request, code in bad:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await method(request, metadata=auth, timeout=10)
                assert info.value.code() == code
    finally:
        await server.stop(None)


async def test_msspctl_telemetry_commands(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands as registered in msspctl, over TLS with the operator token, against the service."""
    await asyncio.to_thread(seed_read_side, db)
    ca = CertificateAuthority.load_or_create(tmp_path / "pki")
    key_pem, chain_pem = ca.server_credentials(tmp_path / "pki", ["127.0.0.1"])
    server, address = await serve_telemetry(db, grpc.ssl_server_credentials([(key_pem, chain_pem)]))
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    for key, value in {"MSSP_CONTROLLER": address, "MSSP_OPERATOR_TOKEN": TOKEN,
                       "MSSP_CA_CERT": str(tmp_path / "ca.crt"), "MSSP_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)

    root = typer.Typer()

    @root.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = Options()

    root.add_typer(cli.alerts_app, name="alerts")
    root.add_typer(cli.telemetry_app, name="telemetry")
    root.command("usage")(cli.usage)

    def run(*args: str) -> Any:
        return CliRunner().invoke(root, list(args))

    month = time.strftime("%Y-%m", time.gmtime(NOW / 1000))
    try:
        result = await asyncio.to_thread(run, "usage", "--tenant", "acme", "--period", month, "-o", "json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["egress_bytes"] == "5000"  # int64 is a string in proto JSON
        result = await asyncio.to_thread(run, "telemetry", "top", "--tenant", "acme", "--by", "category",
                                         "--since", "24h", "-o", "json")
        assert result.exit_code == 0, result.output
        assert [e["key"] for e in json.loads(result.output)["entries"]] == ["cloud-storage"]
        result = await asyncio.to_thread(run, "alerts", "list", "-o", "json")
        assert {a["kind"] for a in json.loads(result.output)} == {"ioc_hit", "upload_threshold"}
        result = await asyncio.to_thread(run, "alerts", "list", "--tenant", "acme")
        assert result.exit_code == 0 and "203.0.113.66" in result.output and "branch-1" in result.output
        result = await asyncio.to_thread(run, "telemetry", "top", "--tenant", "acme")
        assert result.exit_code == 0 and "192.0.2.10" in result.output and "5.0 kB" in result.output
        result = await asyncio.to_thread(run, "telemetry", "top", "--tenant", "acme", "--since", "soon")
        assert result.exit_code != 0 and "--since" in str(result.exception)
        result = await asyncio.to_thread(run, "usage", "--tenant", "nobody")
        assert result.exit_code != 0 and "unknown tenant" in str(result.exception)
    finally:
        await server.stop(None)


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
