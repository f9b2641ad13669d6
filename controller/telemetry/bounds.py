"""When a telemetry batch may say it happened.

A batch's period decides which hour, day and billing month its counts land in and how much online
time it bills, and the period comes from the router. So it is bounded before anything is counted:

- length: at most MAX_PERIOD_MS (mssp.common.telemetry_bounds; the agent never makes longer ones);
- future: it may not end more than MAX_SKEW_MS after the controller's clock;
- past: it may not end more than MAX_AGE_MS ago (idempotency rows are purged after that), nor start
  in a closed billing month, nor start before the gateway enrolled (less MAX_SKEW_MS).

A billing month is *closed* BILLING_CLOSE_DAYS days after it ends (UTC): on the 3rd at 00:00 UTC,
last month's usage is final, it may have been invoiced, and a late or back-dated batch must not change
it. A batch refused here raises PeriodRefused: the consumer terminates it (never redelivered), logs
the reason and counts it; it changes nothing in the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from sqlalchemy import select

from controller.store.db import Database
from controller.store.models import Gateway
from mssp.common.telemetry_bounds import MAX_PERIOD_MS

DAY_MS = 86_400_000
MAX_SKEW_MS = 5 * 60 * 1000  # router clocks drift; more than this ahead is a wrong clock or a lie
MAX_AGE_MS = 30 * DAY_MS
BILLING_CLOSE_DAYS = 2  # month M is closed from day BILLING_CLOSE_DAYS + 1 of month M+1, 00:00 UTC

LOAD_SLICE = 1000  # gateway ids per enrollment query
EnrolledAt = Callable[[str], int | None]  # gateway id -> enrolled_at_ms (None: unknown, not enrolled)


class BatchRejected(Exception):
    """A batch that must not count: malformed, forged identity, or insane values. Never retried."""


class PeriodRefused(BatchRejected):
    """A well-formed batch whose period is out of bounds (back-dated, future, too long)."""


def open_since_ms(now_ms: int) -> int:
    """Start of the oldest billing month still open at now_ms (see the module docstring)."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if now.day <= BILLING_CLOSE_DAYS:  # last month is still open
        month = month.replace(year=month.year - 1, month=12) if month.month == 1 else \
            month.replace(month=month.month - 1)
    return int(month.timestamp() * 1000)


def check_period(start: int, end: int, now: int, enrolled_at_ms: int | None = None) -> None:
    """Raise PeriodRefused (or BatchRejected for a nonsensical period) unless the period is allowed."""
    if start <= 0 or end < start:
        raise BatchRejected(f"bad period {start}..{end}")
    if end - start > MAX_PERIOD_MS:
        raise PeriodRefused(f"period of {(end - start) // 1000}s exceeds {MAX_PERIOD_MS // 1000}s")
    if end > now + MAX_SKEW_MS:
        raise PeriodRefused(f"period ends {(end - now) // 1000}s in the future")
    if end < now - MAX_AGE_MS:
        raise PeriodRefused(f"batch is older than {MAX_AGE_MS // DAY_MS} days")
    if start < open_since_ms(now):
        raise PeriodRefused(f"period starts at {_iso(start)}, in a closed billing month")
    if enrolled_at_ms is not None and start < enrolled_at_ms - MAX_SKEW_MS:
        raise PeriodRefused(f"period starts at {_iso(start)}, before the gateway enrolled "
                            f"({_iso(enrolled_at_ms)})")


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(ms)


class EnrollmentTimes:
    """gateway id -> enrolled_at_ms from the fleet table, cached (it changes only on re-enrollment,
    which makes it later, so a cached value is at worst more lenient for `ttl` seconds). A gateway
    that is unknown or never enrolled maps to None and is remembered for `miss_ttl` seconds, so a
    stream of its batches costs one query per `miss_ttl`. Thread-safe (consumer workers are threads)."""

    def __init__(self, db: Database, *, ttl: float = 600.0, miss_ttl: float = 5.0) -> None:
        self.db = db
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self._cache: dict[str, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, gateway_id: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(gateway_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        return self.load([gateway_id]).get(gateway_id)

    def lookup(self, gateway_ids: Iterable[str]) -> dict[str, int | None]:
        """A whole chunk's gateways: cached ones from memory, all the others in one query (not one
        per batch). Raises what the database raises; the consumer retries the chunk."""
        now = time.monotonic()
        found: dict[str, int | None] = {}
        missing: list[str] = []
        with self._lock:
            for gid in set(gateway_ids):
                hit = self._cache.get(gid)
                if hit is not None and hit[0] > now:
                    found[gid] = hit[1]
                else:
                    missing.append(gid)
        if missing:
            found.update(self.load(missing))
        return found

    def load(self, gateway_ids: Iterable[str]) -> dict[str, int | None]:
        ids = sorted(set(gateway_ids))
        found: dict[str, int | None] = dict.fromkeys(ids)
        with self.db.read_engine.connect() as conn:  # a read: never queue behind ingest's writes
            for i in range(0, len(ids), LOAD_SLICE):  # bounded IN lists (a chunk may hold 8,000 gateways)
                for gid, enrolled in conn.execute(
                    select(Gateway.id, Gateway.enrolled_at_ms).where(
                        Gateway.id.in_(ids[i : i + LOAD_SLICE])  # type: ignore[attr-defined]
                    )
                ):
                    found[gid] = int(enrolled) or None
        now = time.monotonic()
        with self._lock:
            if len(self._cache) > 100_000:  # bounded: forget everything rather than grow without end
                self._cache.clear()
            for gid, enrolled in found.items():
                self._cache[gid] = (now + (self.ttl if enrolled is not None else self.miss_ttl), enrolled)
        return found


class NotEnrolled(PeriodRefused):
    """The batch's gateway is unknown to the fleet or never finished enrolling."""


def check_enrollment(gateway_id: str, enrolled_at_ms: int | None) -> None:
    if enrolled_at_ms is None:
        raise NotEnrolled(f"gateway {gateway_id[:64]!r} is not enrolled")
