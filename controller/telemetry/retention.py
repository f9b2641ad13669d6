"""Telemetry retention: what no batch can match any more, old events and old rollups go; daily usage
stays (billing records). Run by the controller's housekeeping (controller/housekeeping.py); every
DELETE filters on an indexed time column (see controller/telemetry/models.py)."""

from __future__ import annotations

from sqlalchemy import delete

from controller.store.db import Database
from controller.telemetry.bounds import MAX_AGE_MS
from controller.telemetry.fold import DAY_MS, HOUR_MS
from controller.telemetry.models import DetectionEvent, RollupDaily, RollupHourly, TelemetryBatchSeen
from mssp.common.clock import now_ms as clock_ms

SEEN_RETENTION_MS = MAX_AGE_MS + DAY_MS  # older batches are refused, so their rows can go
EVENT_RETENTION_MS = 180 * DAY_MS
ROLLUP_RETENTION_MS = 400 * DAY_MS

_SEEN = TelemetryBatchSeen.__table__  # type: ignore[attr-defined]
_ROLLUP = RollupHourly.__table__  # type: ignore[attr-defined]
_DAILY = RollupDaily.__table__  # type: ignore[attr-defined]
_EVENT = DetectionEvent.__table__  # type: ignore[attr-defined]


def purge(db: Database, now_ms: int | None = None) -> dict[str, int]:
    """Delete what retention lets go; returns how many rows per kind."""
    now = clock_ms() if now_ms is None else now_ms
    with db.engine.begin() as conn:
        seen = conn.execute(delete(_SEEN).where(_SEEN.c.period_end_ms < now - SEEN_RETENTION_MS)).rowcount
        events = conn.execute(delete(_EVENT).where(_EVENT.c.at_ms < now - EVENT_RETENTION_MS)).rowcount
        rollups = conn.execute(delete(_ROLLUP).where(_ROLLUP.c.hour_ms < now - ROLLUP_RETENTION_MS)).rowcount
        # A day goes when its last hour would: the daily sums never hold an hour the hourly ones lost.
        daily = conn.execute(delete(_DAILY).where(
            _DAILY.c.day_ms < now - ROLLUP_RETENTION_MS - DAY_MS + HOUR_MS)).rowcount
    return {"seen": seen, "events": events, "rollups": rollups, "daily_rollups": daily}
