"""Controller-side telemetry on SQLite and PostgreSQL, without a broker: the schema, validation of
incoming batches, folding (every batch counts exactly once, also with two controllers racing),
alerts and retention."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlmodel import SQLModel

from controller.store.db import Database
from controller.telemetry import queries
from controller.telemetry.bounds import MAX_AGE_MS, BatchRejected
from controller.telemetry.fold import DAY_MS
from controller.telemetry.ingest import ingest
from controller.telemetry.models import GatewayHealth, RollupDaily, RollupHourly, TelemetryBatchSeen
from controller.telemetry.retention import ROLLUP_RETENTION_MS, purge
from controller.telemetry.validate import MAX_RECORDS, validate_batch
from gateway_agent.telemetry.publisher import batch_subject
from mssp.common.metrics import CATEGORY_BYTES, DNS_BLOCKED, HOST_EGRESS, IOC_HITS
from mssp.v1 import push_pb2, telemetry_pb2
from tests.support.telemetry_batches import NOW, TA, TB, expected, make_batch, subject_of


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


def _daily_rows(db: Database) -> dict[tuple[Any, ...], tuple[int, int, int]]:
    with db.engine.connect() as conn:
        return {tuple(r[:5]): tuple(r[5:]) for r in conn.execute(select(RollupDaily.__table__))}  # type: ignore[attr-defined]


def _hourly_by_day(db: Database) -> dict[tuple[Any, ...], tuple[int, int, int]]:
    out: dict[tuple[Any, ...], list[int]] = {}
    with db.engine.connect() as conn:
        for tid, metric, hour, gid, dim, *sums in conn.execute(select(RollupHourly.__table__)):  # type: ignore[attr-defined]
            acc = out.setdefault((tid, metric, hour // DAY_MS * DAY_MS, gid, dim), [0, 0, 0])
            for i, v in enumerate(sums):
                acc[i] += v
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def test_daily_rollups_equal_the_hourly_ones_summed_per_day(db: Database) -> None:
    """The security report reads the daily table: it must hold exactly the hourly sums, across a day
    boundary, with duplicates and redeliveries counted once."""
    midnight = (NOW - 2 * DAY_MS) // DAY_MS * DAY_MS
    ends = [midnight - 2 * 3600_000, midnight - 600_000, midnight - 30_000, midnight + 60_000,
            midnight + 3 * 3600_000]
    batches = [make_batch(f"gw{g}", i + 1, tenant=TA if g else TB, end_ms=end)
               for g in range(3) for i, end in enumerate(ends)]
    ingest(db, batches[:7] + batches[:2], now_ms=NOW)
    ingest(db, batches[::-1], now_ms=NOW)  # a redelivery in another order
    daily = _daily_rows(db)
    assert daily == _hourly_by_day(db)
    days = {k[2] for k in daily}
    assert days == {midnight - DAY_MS, midnight}, "the batches straddle midnight"
    sent = sum(r.bytes for b in batches for r in b.records)
    assert sum(v[1] for v in daily.values()) == sent
    gone = purge(db, now_ms=NOW + ROLLUP_RETENTION_MS + DAY_MS)  # past every hour's retention
    assert (gone["rollups"] > 0, gone["daily_rollups"]) == (True, len(daily)) and _daily_rows(db) == {}


def test_migration_backfills_daily_rollups_from_hourly_ones(tmp_path: Any) -> None:
    from alembic import command

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(db.alembic_config(), "0005_lifecycle")
    ingest_day = NOW // DAY_MS * DAY_MS
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO rollup_hourly (tenant_id, metric, hour_ms, gateway_id, dimension, packets, bytes,"
            " count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(TA, HOST_EGRESS, ingest_day + h * 3600_000, "gw1", "192.0.2.10", 1, 100 + h, 0)
             for h in (0, 5, 23)] + [(TA, HOST_EGRESS, ingest_day + DAY_MS, "gw1", "192.0.2.10", 2, 7, 0)],
        )
    db.upgrade()
    assert _daily_rows(db) == {
        (TA, HOST_EGRESS, ingest_day, "gw1", "192.0.2.10"): (3, 100 + 105 + 123, 0),
        (TA, HOST_EGRESS, ingest_day + DAY_MS, "gw1", "192.0.2.10"): (2, 7, 0),
    }
    db.dispose()
