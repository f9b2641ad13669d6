"""Write folded telemetry chunks into the rollups, each batch exactly once.

Exactly once comes from the database, not the broker: the batch's (gateway_id, batch_seq) row is
inserted in the same transaction as its rollup increments. A batch that is redelivered (late ack),
replayed from an agent's spool, published twice, or processed again after the controller died
between commit and ack finds its row and adds nothing. The broker's Nats-Msg-Id window only saves work.

Speed comes from folding a whole fetched chunk at once: records are summed in memory per rollup key
(fold.py, before the transaction opens), then written with one INSERT .. ON CONFLICT DO UPDATE per
table (controller/store/bulk.py), in key order so concurrent controllers lock rows in the same order
and cannot deadlock. Validation is validate.py; retention is retention.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from controller.store.bulk import bulk_upsert
from controller.store.db import Database
from controller.telemetry.alerts import Thresholds, add_categories, insert_events
from controller.telemetry.fold import Folded, prepare
from controller.telemetry.models import (
    GatewayHealth,
    RollupDaily,
    RollupHourly,
    TelemetryBatchSeen,
    UsageDaily,
)
from mssp.common.clock import now_ms as clock_ms
from mssp.common.metrics import AlertKind
from mssp.v1 import telemetry_pb2

log = logging.getLogger("mssp.controller.telemetry")

ROLLUP_KEY = ["tenant_id", "metric", "hour_ms", "gateway_id", "dimension"]
DAILY_KEY = ["tenant_id", "metric", "day_ms", "gateway_id", "dimension"]
USAGE_KEY = ["tenant_id", "day", "gateway_id"]

_SEEN = TelemetryBatchSeen.__table__  # type: ignore[attr-defined]
_ROLLUP = RollupHourly.__table__  # type: ignore[attr-defined]
_DAILY = RollupDaily.__table__  # type: ignore[attr-defined]
_USAGE = UsageDaily.__table__  # type: ignore[attr-defined]
_HEALTH = GatewayHealth.__table__  # type: ignore[attr-defined]


@dataclass
class FoldResult:
    new: int = 0
    duplicates: int = 0
    records: int = 0
    rollup_rows: int = 0
    alerts: int = 0
    counted: set[tuple[str, int]] = field(default_factory=set)  # (gateway_id, seq) folded now
    # IOC hits and sinkholed queries folded now, as sightings (controller/services/sightings.py):
    # (tenant id, gateway id, indicator, LAN host, via, count, at ms).
    sightings: list[tuple[str, str, str, str, str, int, int]] = field(default_factory=list)


def _claim(
    conn: Connection, batches: Sequence[telemetry_pb2.TelemetryBatch], now: int
) -> set[tuple[str, int]]:
    """Insert the idempotency rows; returns the keys that were not there before (to be counted now).

    On PostgreSQL a concurrent transaction inserting the same key makes us wait for its outcome, so
    two controllers never both count a batch."""
    cols = ["gateway_id", "batch_seq", "tenant_id", "period_end_ms", "received_at_ms"]
    rows = [(b.gateway_id, b.batch_seq, b.tenant_id, b.period_end_ms, now) for b in batches]
    got = bulk_upsert(conn, _SEEN, cols, rows, keys=cols[:2], returning=cols[:2])
    return {(g, int(q)) for g, q in got}


def fold(
    conn: Connection,
    batches: Sequence[telemetry_pb2.TelemetryBatch],
    thresholds_of: Thresholds | None = None,
    now_ms: int | None = None,
    *,
    prepared: Folded | None = None,
) -> FoldResult:
    """Fold validated batches into the rollups inside the caller's transaction. The sums are made
    up front (`prepared`) assuming every batch is new; only when the idempotency rows say some were
    counted before are they summed again without those (the rare path)."""
    now = clock_ms() if now_ms is None else now_ms
    f = prepared if prepared is not None else prepare(batches)
    result = FoldResult(duplicates=f.duplicates)
    if not f.batches:
        return result
    if conn.dialect.name == "postgresql":  # sort the chunk's rows in memory, not in temp files
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
    claimed = _claim(conn, f.batches, now)
    if len(claimed) != len(f.batches):
        result.duplicates += len(f.batches) - len(claimed)
        f = prepare([b for b in f.batches if (b.gateway_id, b.batch_seq) in claimed])
    result.counted = f.keys
    result.new = len(f.batches)
    result.records = f.records
    if not f.batches:
        return result
    sums = ["packets", "bytes", "count"]
    bulk_upsert(conn, _ROLLUP, [*ROLLUP_KEY, *sums], f.rollup_tuples(), keys=ROLLUP_KEY, add=sums)
    bulk_upsert(conn, _DAILY, [*DAILY_KEY, *sums], f.daily_tuples(), keys=DAILY_KEY, add=sums)
    result.rollup_rows = f.rollup_rows
    sums = ["bytes", "online", "batches"]
    bulk_upsert(conn, _USAGE, [*USAGE_KEY, *sums], f.usage_tuples(), keys=USAGE_KEY, add=sums)
    # Newest health wins by batch seq; a replayed old batch leaves it alone.
    names = list(next(iter(f.health.values())))
    health = [tuple(h[c] for c in names) for h in f.health.values()]
    bulk_upsert(conn, _HEALTH, names, health, keys=["gateway_id"], newer="batch_seq")
    events = dict(f.events)
    result.sightings = [_sighting(e) for e in events.values() if e["kind"] == AlertKind.IOC_HIT]
    if f.categories:
        add_categories(conn, events, f.category_tuples(), thresholds_of, now)
    result.alerts = insert_events(conn, events)
    return result


def _sighting(event: dict[str, Any]) -> tuple[str, str, str, str, str, int, int]:
    details = json.loads(event["details"])
    via = "dns" if details.get("via") == "dns" else "firewall"
    count = int(details.get("queries") or details.get("packets") or 1)
    return (event["tenant_id"], event["gateway_id"], event["subject"], event["host"], via, count,
            event["at_ms"])


def is_transient(exc: BaseException) -> bool:
    """Lock timeouts, deadlocks, serialization failures, lost connections: worth retrying as is."""
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return sqlstate in {"40001", "40P01", "55P03"}


def ingest(
    db: Database,
    batches: Sequence[telemetry_pb2.TelemetryBatch],
    thresholds_of: Thresholds | None = None,
    *,
    now_ms: int | None = None,
    attempts: int = 3,
) -> FoldResult:
    """Fold batches in one transaction (retried on transient errors: nothing was committed).
    The in-memory summing happens before the transaction opens, so locks are held only for writes."""
    prepared = prepare(batches)
    for attempt in range(1, attempts + 1):
        try:
            with db.engine.begin() as conn:
                return fold(conn, batches, thresholds_of, now_ms, prepared=prepared)
        except IntegrityError:
            raise
        except DBAPIError as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            log.warning("telemetry fold attempt %d failed (%s); retrying", attempt, exc.orig)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")
