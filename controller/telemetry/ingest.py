"""Validate gateway telemetry batches and fold them into rollups, each batch exactly once.

Exactly once comes from the database, not the broker: the batch's (gateway_id, batch_seq) row is
inserted in the same transaction as its rollup increments. A batch that is redelivered (late ack),
replayed from an agent's spool, published twice, or processed again after the controller died
between commit and ack finds its row and adds nothing. The broker's Nats-Msg-Id window only saves work.

Speed comes from folding a whole fetched chunk at once: records are summed in memory per rollup key
(before the transaction opens), then written with one INSERT .. ON CONFLICT DO UPDATE per table
(binary COPY into a temp table + INSERT .. SELECT on PostgreSQL, executemany on SQLite), in key order
so concurrent controllers lock rows in the same order and cannot deadlock.

Validation is strict because the payload comes from routers: the identity in the batch must be the
one the broker authenticated (the subject), so the idempotency key (gateway_id, batch_seq) is the
broker's gateway, never a claim; the period must be possible (bounds.py) and values sane before they
reach a bill; text is made inert (escaped terminal controls) before it is stored.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError
from sqlalchemy import BigInteger, Float, Integer, Table, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from controller.store.db import Database
from controller.telemetry.bounds import MAX_AGE_MS, BatchRejected, EnrolledAt, check_enrollment, check_period
from controller.telemetry.models import (
    DIMENSION_LEN,
    HOST_LEN,
    SUBJECT_LEN,
    CategoryDaily,
    DetectionEvent,
    GatewayHealth,
    RollupHourly,
    TelemetryBatchSeen,
    UsageDaily,
)
from mssp.common.channels import TELEMETRY_PREFIX
from mssp.common.clock import now_ms as clock_ms
from mssp.common.metrics import CATEGORY_BYTES, DNS_BLOCKED, HOST_EGRESS, IOC_HITS, AlertKind
from mssp.common.text import clean_line
from mssp.v1 import telemetry_pb2

log = logging.getLogger("mssp.controller.telemetry")

MAX_BATCH_BYTES = 1024 * 1024  # the broker's max_payload
MAX_RECORDS = 10_000
MAX_VALUE = 10**15  # per record and counter: a petabyte in 30 s is a bug or an attack
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

SEEN_RETENTION_MS = MAX_AGE_MS + DAY_MS  # older batches are refused, so their rows can go
EVENT_RETENTION_MS = 180 * DAY_MS
ROLLUP_RETENTION_MS = 400 * DAY_MS

ROLLUP_KEY = ["tenant_id", "metric", "hour_ms", "gateway_id", "dimension"]
USAGE_KEY = ["tenant_id", "day", "gateway_id"]


_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_METRIC_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_known_metrics: set[str] = set()

Thresholds = Callable[[str], list[tuple[str, int]]]

# ---- validation --------------------------------------------------------------------------------


def subject_identity(subject: str) -> tuple[str, str]:
    """(tenant_id, gateway_id) the broker vouches for: mssp.telemetry.<tenant>.<gateway>.<...>."""
    parts = subject.split(".")
    if len(parts) < 5 or f"{parts[0]}.{parts[1]}" != TELEMETRY_PREFIX:
        raise BatchRejected(f"not a telemetry subject: {subject[:200]!r}")
    return parts[2], parts[3]


def _metric_ok(metric: str) -> bool:
    if metric in _known_metrics:
        return True
    if not _METRIC_RE.fullmatch(metric):
        return False
    if len(_known_metrics) < 1000:  # a cache, bounded against a flood of invented names
        _known_metrics.add(metric)
    return True


def validate_batch(
    subject: str, data: bytes, now_ms: int | None = None, *, enrolled_at: EnrolledAt | None = None
) -> telemetry_pb2.TelemetryBatch:
    """Parse and check one message; BatchRejected says why in one line (PeriodRefused: bounds.py)."""
    now = clock_ms() if now_ms is None else now_ms
    tenant_id, gateway_id = subject_identity(subject)
    if len(data) > MAX_BATCH_BYTES:
        raise BatchRejected(f"batch of {len(data)} bytes exceeds {MAX_BATCH_BYTES}")
    batch = telemetry_pb2.TelemetryBatch()
    try:
        batch.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise BatchRejected(f"not a TelemetryBatch: {exc}") from None
    if batch.tenant_id != tenant_id or batch.gateway_id != gateway_id:
        raise BatchRejected(
            f"batch claims {batch.tenant_id[:64]!r}/{batch.gateway_id[:64]!r} "
            f"but was published as {tenant_id[:64]!r}/{gateway_id[:64]!r}"
        )
    if not _ID_RE.fullmatch(tenant_id) or not _ID_RE.fullmatch(gateway_id):
        raise BatchRejected("tenant or gateway id is not a valid id")
    if batch.batch_seq < 1 or batch.batch_seq >= 2**63:
        raise BatchRejected(f"batch_seq {batch.batch_seq} out of range")
    enrolled = None
    if enrolled_at is not None:
        check_enrollment(gateway_id, enrolled := enrolled_at(gateway_id))
    check_period(batch.period_start_ms, batch.period_end_ms, now, enrolled)
    if len(batch.records) > MAX_RECORDS:
        raise BatchRejected(f"{len(batch.records)} records exceed {MAX_RECORDS}")
    known = _known_metrics
    for r in batch.records:
        metric, dim, p, b, c = r.metric, r.dimension, r.packets, r.bytes, r.count
        if metric not in known and not _metric_ok(metric):
            raise BatchRejected(f"bad metric name {metric[:40]!r}")
        if p < 0 or b < 0 or c < 0:
            raise BatchRejected(f"negative value in {metric}")
        if p > MAX_VALUE or b > MAX_VALUE or c > MAX_VALUE:
            raise BatchRejected(f"absurd value in {metric} (> {MAX_VALUE})")
        if len(dim) > DIMENSION_LEN:
            raise BatchRejected(f"bad dimension in {metric}")
        if not dim.isprintable():  # NUL (the fold's separator) and terminal controls: escaped
            r.dimension = clean_line(dim, DIMENSION_LEN)
    h = batch.health
    gauges = (h.rss_bytes, h.apply_errors, h.spool_drops, h.spool_depth)
    if min(gauges) < 0 or max(gauges) > MAX_VALUE:
        raise BatchRejected("agent health value out of range")
    if not (math.isfinite(h.cpu_seconds) and 0 <= h.cpu_seconds <= MAX_VALUE):
        raise BatchRejected("agent cpu_seconds out of range")
    if len(h.agent_version) > 64:
        raise BatchRejected("agent_version too long")
    if not h.agent_version.isprintable():
        h.agent_version = clean_line(h.agent_version, 64)
    return batch


# ---- folding -----------------------------------------------------------------------------------


@dataclass
class FoldResult:
    new: int = 0
    duplicates: int = 0
    records: int = 0
    rollup_rows: int = 0
    alerts: int = 0
    counted: set[tuple[str, int]] = field(default_factory=set)  # (gateway_id, seq) folded now


def _insert(conn: Connection, table: Table) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        return pg_insert(table)
    if name == "sqlite":
        return sqlite_insert(table)
    raise NotImplementedError(f"telemetry upserts need SQLite or PostgreSQL, not {name}")


def _pg_type(column: Any) -> str:
    if isinstance(column.type, BigInteger | Integer):
        return "int8"
    if isinstance(column.type, Float):
        return "float8"
    return "text"


Row = tuple[Any, ...]
_temp_tables = itertools.count()


def _bulk(
    conn: Connection,
    table: Table,
    cols: Sequence[str],
    rows: Iterable[Row],
    *,
    keys: list[str],
    add: list[str] | None = None,
    newer: str | None = None,
    returning: list[str] | None = None,
) -> list[Row]:
    """One INSERT .. ON CONFLICT for many rows (tuples in `cols` order), the fast way on each database.

    add: columns summed into an existing row; newer: replace the row only if this column grows;
    neither: DO NOTHING. Rows are applied in key order so that concurrent transactions lock shared
    rows in the same order and cannot deadlock.

    PostgreSQL: binary COPY into a temp table, then one INSERT .. SELECT .. ORDER BY .. ON CONFLICT.
    COPY's row encoding runs in C; parameter arrays are encoded element by element in Python and
    cost several times more client CPU. SQLite: a cached statement run by executemany
    (SQLAlchemy's insertmanyvalues when RETURNING is needed). Building a multi-VALUES statement per
    chunk instead costs more in SQL compilation than the database spends on the rows.
    """
    if conn.dialect.name == "postgresql":
        return _bulk_pg(conn, table, cols, rows, keys=keys, add=add, newer=newer, returning=returning)
    key_index = [list(cols).index(k) for k in keys]
    params = [dict(zip(cols, r, strict=True)) for r in sorted(rows, key=lambda r: [r[i] for i in key_index])]
    if not params:
        return []
    stmt = _insert(conn, table)
    if add:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: table.c[c] + stmt.excluded[c] for c in add}
        )
    elif newer:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={c: stmt.excluded[c] for c in cols if c not in keys},
            where=table.c[newer] < stmt.excluded[newer],
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    if returning:
        stmt = stmt.returning(*(table.c[c] for c in returning))
        return [tuple(row) for row in conn.execute(stmt, params)]
    conn.execute(stmt, params)
    return []


def _bulk_pg(
    conn: Connection,
    table: Table,
    cols: Sequence[str],
    rows: Iterable[Row],
    *,
    keys: list[str],
    add: list[str] | None,
    newer: str | None,
    returning: list[str] | None,
) -> list[Row]:
    q = conn.dialect.identifier_preparer.quote
    tname = q(table.name)
    temp = f"_bulk_{table.name}_{next(_temp_tables)}"
    types = [_pg_type(table.c[c]) for c in cols]
    collist = ", ".join(q(c) for c in cols)
    if add:
        action = "DO UPDATE SET " + ", ".join(f"{q(c)} = {tname}.{q(c)} + EXCLUDED.{q(c)}" for c in add)
    elif newer:
        action = "DO UPDATE SET " + ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in cols if c not in keys)
        action += f" WHERE {tname}.{q(newer)} < EXCLUDED.{q(newer)}"
    else:
        action = "DO NOTHING"
    keylist = ", ".join(q(k) for k in keys)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            f"CREATE TEMP TABLE {temp} ({', '.join(f'{q(c)} {t}' for c, t in zip(cols, types, strict=True))})"
            " ON COMMIT DROP"
        )
        with cursor.copy(f"COPY {temp} ({collist}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        sql = (f"INSERT INTO {tname} ({collist}) SELECT {collist} FROM {temp} ORDER BY {keylist} "
               f"ON CONFLICT ({keylist}) {action}")
        if returning:
            sql += " RETURNING " + ", ".join(q(c) for c in returning)
        cursor.execute(sql)
        out = [tuple(row) for row in cursor.fetchall()] if returning else []
        cursor.execute(f"DROP TABLE {temp}")
        return out
    finally:
        cursor.close()


def _flat(sums: dict[Any, list[int]]) -> Iterable[Row]:
    """{key tuple: [values]} -> rows (key..., values...)."""
    return ((*k, *v) for k, v in sums.items())


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _split(dimension: str) -> tuple[str, str]:
    key, _, host = dimension.rpartition("|")
    return (key, host) if key else (dimension, "")


_SEEN = TelemetryBatchSeen.__table__  # type: ignore[attr-defined]
_ROLLUP = RollupHourly.__table__  # type: ignore[attr-defined]
_USAGE = UsageDaily.__table__  # type: ignore[attr-defined]
_CATEGORY = CategoryDaily.__table__  # type: ignore[attr-defined]
_HEALTH = GatewayHealth.__table__  # type: ignore[attr-defined]
_EVENT = DetectionEvent.__table__  # type: ignore[attr-defined]


def _claim(
    conn: Connection, batches: Sequence[telemetry_pb2.TelemetryBatch], now: int
) -> set[tuple[str, int]]:
    """Insert the idempotency rows; returns the keys that were not there before (to be counted now).

    On PostgreSQL a concurrent transaction inserting the same key makes us wait for its outcome, so
    two controllers never both count a batch."""
    cols = ["gateway_id", "batch_seq", "tenant_id", "period_end_ms", "received_at_ms"]
    rows = [(b.gateway_id, b.batch_seq, b.tenant_id, b.period_end_ms, now) for b in batches]
    got = _bulk(conn, _SEEN, cols, rows, keys=cols[:2], returning=cols[:2])
    return {(g, int(q)) for g, q in got}


@dataclass
class Sums:
    """Counters summed per key, for keys sharing one prefix (tenant, hour, gateway), kept as flat
    lists of ints: per record this allocates no container object, which keeps the cyclic garbage
    collector from rescanning a growing heap every few hundred records (it halves the cost)."""

    index: dict[str, int] = field(default_factory=dict)
    packets: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    count: list[int] = field(default_factory=list)

    def add(self, key: str, packets: int, nbytes: int, count: int) -> None:
        i = self.index.get(key)
        if i is None:
            self.index[key] = len(self.packets)
            self.packets.append(packets)
            self.bytes.append(nbytes)
            self.count.append(count)
        else:
            self.packets[i] += packets
            self.bytes[i] += nbytes
            self.count[i] += count


@dataclass
class Folded:
    """A chunk summed in memory, ready to be written (made before the transaction opens)."""

    batches: list[telemetry_pb2.TelemetryBatch]  # unique by (gateway_id, batch_seq)
    duplicates: int = 0  # repeats inside the chunk
    records: int = 0
    rollup: dict[tuple[str, int, str], Sums] = field(default_factory=dict)  # key "<metric>\0<dimension>"
    categories: dict[tuple[str, str, str], Sums] = field(default_factory=dict)  # key "<dimension>"
    usage: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def keys(self) -> set[tuple[str, int]]:
        return {(b.gateway_id, b.batch_seq) for b in self.batches}

    @property
    def rollup_rows(self) -> int:
        return sum(len(s.packets) for s in self.rollup.values())

    def rollup_tuples(self) -> Iterator[Row]:
        """(tenant, metric, hour, gateway, dimension, packets, bytes, count)"""
        for (tid, hour, gid), s in self.rollup.items():
            for key, i in s.index.items():
                metric, _, dim = key.partition("\0")
                yield (tid, metric, hour, gid, dim, s.packets[i], s.bytes[i], s.count[i])

    def category_tuples(self) -> Iterator[Row]:
        """(tenant, day, gateway, dimension, packets, bytes)"""
        for (tid, day, gid), s in self.categories.items():
            for dim, i in s.index.items():
                yield (tid, day, gid, dim, s.packets[i], s.bytes[i])


def prepare(batches: Sequence[telemetry_pb2.TelemetryBatch]) -> Folded:
    """Sum a chunk of validated batches per rollup key (pure: no database)."""
    unique: dict[tuple[str, int], telemetry_pb2.TelemetryBatch] = {}
    for b in batches:
        unique.setdefault((b.gateway_id, b.batch_seq), b)
    f = Folded(batches=list(unique.values()), duplicates=len(batches) - len(unique))
    usage, health, events = f.usage, f.health, f.events
    for b in f.batches:
        tid, gid = b.tenant_id, b.gateway_id
        hour = b.period_start_ms // HOUR_MS * HOUR_MS
        day = _day(b.period_start_ms)
        sums = f.rollup.get((tid, hour, gid))
        if sums is None:
            sums = f.rollup[(tid, hour, gid)] = Sums()
        add = sums.add
        egress = 0
        for r in b.records:
            metric, dim, p, n, k = r.metric, r.dimension, r.packets, r.bytes, r.count
            add(metric + "\0" + dim, p, n, k)  # validation keeps NUL out of names and dimensions
            if metric == HOST_EGRESS:
                egress += n
            elif metric == CATEGORY_BYTES:
                cat = f.categories.get((tid, day, gid))
                if cat is None:
                    cat = f.categories[(tid, day, gid)] = Sums()
                cat.add(dim, p, n, 0)
            elif metric == IOC_HITS or metric == DNS_BLOCKED:
                _ioc_event(events, b, day, metric, dim, p, n, k)
        f.records += len(b.records)
        uk = (tid, day, gid)
        online = (b.period_end_ms - b.period_start_ms) // 1000
        u = usage.get(uk)
        if u is None:
            usage[uk] = [egress, online, 1]
        else:
            u[0] += egress
            u[1] += online
            u[2] += 1
        h = health.get(gid)
        if h is None or h["batch_seq"] < b.batch_seq:
            health[gid] = _health_row(b)
    return f


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
    _bulk(conn, _ROLLUP, [*ROLLUP_KEY, *sums], f.rollup_tuples(), keys=ROLLUP_KEY, add=sums)
    result.rollup_rows = f.rollup_rows
    sums = ["bytes", "online", "batches"]
    _bulk(conn, _USAGE, [*USAGE_KEY, *sums], _flat(f.usage), keys=USAGE_KEY, add=sums)
    # Newest health wins by batch seq; a replayed old batch leaves it alone.
    names = list(next(iter(f.health.values())))
    health = [tuple(h[c] for c in names) for h in f.health.values()]
    _bulk(conn, _HEALTH, names, health, keys=["gateway_id"], newer="batch_seq")
    events = dict(f.events)
    if f.categories:
        _categories(conn, events, f.category_tuples(), thresholds_of, now)
    result.alerts = _insert_events(conn, events)
    return result


def _health_row(b: telemetry_pb2.TelemetryBatch) -> dict[str, Any]:
    h = b.health
    return {
        "gateway_id": b.gateway_id, "tenant_id": b.tenant_id, "batch_seq": b.batch_seq,
        "at_ms": b.period_end_ms, "rss_bytes": h.rss_bytes, "cpu_seconds": h.cpu_seconds,
        "apply_errors": h.apply_errors, "applied_global_seq": min(h.applied.global_seq, 2**63 - 1),
        "applied_tenant_seq": min(h.applied.tenant_seq, 2**63 - 1), "spool_drops": h.spool_drops,
        "spool_depth": h.spool_depth, "agent_version": h.agent_version,
    }


def _event(
    tenant_id: str, gateway_id: str, kind: str, subject: str, host: str, at_ms: int, day: str,
    details: dict[str, Any],
) -> dict[str, Any]:
    subject, host = subject[:SUBJECT_LEN], host[:HOST_LEN]
    return {
        "id": uuid.uuid4().hex, "tenant_id": tenant_id, "gateway_id": gateway_id, "kind": kind,
        "subject": subject, "host": host, "at_ms": at_ms,
        "details": json.dumps(details, separators=(",", ":"), sort_keys=True),
        "dedupe_key": f"{kind}|{tenant_id}|{gateway_id}|{host}|{day}|{subject}",
    }


def _ioc_event(
    events: dict[str, dict[str, Any]], b: telemetry_pb2.TelemetryBatch, day: str, metric: str, dim: str,
    packets: int, nbytes: int, count: int,
) -> None:
    """One event per IOC, host, gateway and day: the first hit; later ones are in the rollups."""
    if not (packets or count):
        return
    ioc, host = _split(dim)
    details = {"via": "dns" if metric == DNS_BLOCKED else "firewall", "batch_seq": b.batch_seq}
    if metric == DNS_BLOCKED:
        details["queries"] = count
    else:
        details.update(packets=packets, bytes=nbytes)
    ev = _event(b.tenant_id, b.gateway_id, AlertKind.IOC_HIT, ioc, host, b.period_end_ms, day, details)
    events.setdefault(ev["dedupe_key"], ev)


def _categories(
    conn: Connection,
    events: dict[str, dict[str, Any]],
    categories: Iterable[Row],
    thresholds_of: Thresholds | None,
    now: int,
) -> None:
    """Add to the per-day category bytes and compare each new total (this chunk included, same
    transaction) with the tenant's upload threshold for that category."""
    keys = ["tenant_id", "day", "gateway_id", "dimension"]
    totals = _bulk(conn, _CATEGORY, [*keys, "packets", "bytes"], categories,
                   keys=keys, add=["packets", "bytes"], returning=[*keys, "bytes"])
    if thresholds_of is None:
        return
    limits: dict[str, dict[str, int]] = {}
    for tid, day, gid, dim, total in totals:
        if tid not in limits:
            try:
                limits[tid] = {c: int(n) for c, n in thresholds_of(tid) if int(n) > 0}
            except Exception:  # a policy lookup failure must not lose the batch; alerts are best effort
                log.exception("upload thresholds of tenant %s unavailable", tid)
                limits[tid] = {}
        if not limits[tid]:
            continue
        category, host = _split(dim)
        limit = limits[tid].get(category)
        if limit is not None and int(total) > limit:
            ev = _event(tid, gid, AlertKind.UPLOAD_THRESHOLD, category, host, now, day,
                        {"bytes": int(total), "threshold": limit, "day": day})
            events.setdefault(ev["dedupe_key"], ev)


def _insert_events(conn: Connection, events: dict[str, dict[str, Any]]) -> int:
    if not events:
        return 0
    names = list(next(iter(events.values())))
    rows = [tuple(e[n] for n in names) for e in events.values()]
    return len(_bulk(conn, _EVENT, names, rows, keys=["dedupe_key"], returning=["id"]))


# ---- transactions ------------------------------------------------------------------------------


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


def purge(db: Database, now_ms: int | None = None) -> dict[str, int]:
    """Retention: idempotency rows no batch can match any more, old events and old rollups.
    Daily usage is kept (billing records)."""
    now = clock_ms() if now_ms is None else now_ms
    with db.engine.begin() as conn:
        seen = conn.execute(delete(_SEEN).where(_SEEN.c.period_end_ms < now - SEEN_RETENTION_MS)).rowcount
        events = conn.execute(delete(_EVENT).where(_EVENT.c.at_ms < now - EVENT_RETENTION_MS)).rowcount
        rollups = conn.execute(delete(_ROLLUP).where(_ROLLUP.c.hour_ms < now - ROLLUP_RETENTION_MS)).rowcount
    return {"seen": seen, "events": events, "rollups": rollups}
