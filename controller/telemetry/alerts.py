"""Detection events: IOC hits (made while folding, in memory) and upload-threshold crossings (checked
against the per-day category totals inside the fold's transaction), stored once per dedupe key."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.engine import Connection

from controller.store.bulk import Row, bulk_upsert
from controller.telemetry.models import HOST_LEN, SUBJECT_LEN, CategoryDaily, DetectionEvent
from mssp.common.metrics import DNS_BLOCKED, AlertKind
from mssp.v1 import telemetry_pb2

log = logging.getLogger("mssp.controller.telemetry")

Thresholds = Callable[[str], list[tuple[str, int]]]
Events = dict[str, dict[str, Any]]  # dedupe key -> detection_event row

_CATEGORY = CategoryDaily.__table__  # type: ignore[attr-defined]
_EVENT = DetectionEvent.__table__  # type: ignore[attr-defined]


def split_dimension(dimension: str) -> tuple[str, str]:
    """"<key>|<host>" -> (key, host); a dimension without a host is all key."""
    key, _, host = dimension.rpartition("|")
    return (key, host) if key else (dimension, "")


def event_row(
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


def ioc_event(
    events: Events, b: telemetry_pb2.TelemetryBatch, day: str, metric: str, dim: str,
    packets: int, nbytes: int, count: int,
) -> None:
    """One event per IOC, host, gateway and day: the first hit; later ones are in the rollups."""
    if not (packets or count):
        return
    ioc, host = split_dimension(dim)
    details = {"via": "dns" if metric == DNS_BLOCKED else "firewall", "batch_seq": b.batch_seq}
    if metric == DNS_BLOCKED:
        details["queries"] = count
    else:
        details.update(packets=packets, bytes=nbytes)
    ev = event_row(b.tenant_id, b.gateway_id, AlertKind.IOC_HIT, ioc, host, b.period_end_ms, day, details)
    events.setdefault(ev["dedupe_key"], ev)


def add_categories(
    conn: Connection,
    events: Events,
    categories: Iterable[Row],
    thresholds_of: Thresholds | None,
    now: int,
) -> None:
    """Add to the per-day category bytes and compare each new total (this chunk included, same
    transaction) with the tenant's upload threshold for that category."""
    keys = ["tenant_id", "day", "gateway_id", "dimension"]
    totals = bulk_upsert(conn, _CATEGORY, [*keys, "packets", "bytes"], categories,
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
        category, host = split_dimension(dim)
        limit = limits[tid].get(category)
        if limit is not None and int(total) > limit:
            ev = event_row(tid, gid, AlertKind.UPLOAD_THRESHOLD, category, host, now, day,
                           {"bytes": int(total), "threshold": limit, "day": day})
            events.setdefault(ev["dedupe_key"], ev)


def insert_events(conn: Connection, events: Events) -> int:
    """Store the events not stored before (by dedupe key); returns how many are new."""
    if not events:
        return 0
    names = list(next(iter(events.values())))
    rows = [tuple(e[n] for n in names) for e in events.values()]
    return len(bulk_upsert(conn, _EVENT, names, rows, keys=["dedupe_key"], returning=["id"]))
