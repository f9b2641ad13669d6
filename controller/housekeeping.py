"""The controller's housekeeping: one loop that runs periodic maintenance jobs, each once per period
across every controller on the database (a lease row per job, controller/store/lease.py).

Jobs: IOC expiry (its removal pushes wake the publisher as soon as they are committed), push-log
pruning (resyncs would otherwise replay an ever-growing log), telemetry retention, and deleting
enrollment tokens some time past their expiry. Each job body is blocking database work run in a
worker thread; a slow job never delays the others, and a job never overlaps itself in one process.

The lease lasts LEASE_FACTOR periods: the holder renews it every period, before it expires, so it
keeps the job while it lives; another replica takes over once it stops renewing (at most
LEASE_FACTOR + 1 periods later) and never runs the job sooner than a period after the last run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from controller.config import Settings
from controller.store.db import Database
from controller.store.lease import take_lease
from controller.store.tokens import delete_expired_tokens
from controller.telemetry.retention import purge
from mssp.common.aio import cancel_and_wait, wait_event
from mssp.common.clock import now_ms

log = logging.getLogger("mssp.controller.housekeeping")

LEASE_FACTOR = 1.5
Removed = int | Mapping[str, int]  # what a job removed: a count, or counts by kind


def removed_total(removed: Removed) -> int:
    return removed if isinstance(removed, int) else sum(removed.values())


@dataclass
class Job:
    name: str  # also the lease key: the same on every controller
    period: float  # seconds
    run: Callable[[], Removed]  # blocking (a worker thread)
    what: str  # what it removes, for the log line
    after: Callable[[Removed], None] | None = None  # on the event loop, after a run that removed something


@dataclass
class JobStats:
    runs: int = 0  # lease taken, body run
    skipped: int = 0  # another controller holds the lease
    errors: int = 0
    removed: int = 0


class Housekeeper:
    """Runs `jobs` in one loop; `holder` names this controller in the leases (unique per process)."""

    def __init__(
        self,
        db: Database,
        jobs: list[Job],
        *,
        holder: str | None = None,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        if len({j.name for j in jobs}) != len(jobs):
            raise ValueError("housekeeping job names must be unique")
        self.db = db
        self.jobs = jobs
        self.holder = holder or uuid.uuid4().hex
        self.clock_ms = clock_ms
        self.stats = {j.name: JobStats() for j in jobs}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def run_job(self, job: Job) -> Removed | None:
        """One attempt (blocking): take the lease, run the body. None: another controller has it."""
        stats = self.stats[job.name]
        ttl_ms = max(1, int(job.period * LEASE_FACTOR * 1000))
        if not take_lease(self.db, job.name, self.holder, ttl_ms, self.clock_ms()):
            stats.skipped += 1
            return None
        try:
            removed = job.run()
        except Exception:
            stats.errors += 1
            raise
        stats.runs += 1
        total = removed_total(removed)
        stats.removed += total
        if total:
            detail = "" if isinstance(removed, int) else " (" + ", ".join(
                f"{k} {v}" for k, v in removed.items()) + ")"
            log.info("housekeeping %s: removed %d %s%s", job.name, total, job.what, detail)
        return removed

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="housekeeping")

    async def stop(self) -> None:
        """Stop scheduling; wait for runs in progress (a worker thread cannot be cancelled, and the
        database is closed after this)."""
        await cancel_and_wait(self._task)
        self._task = None
        running = list(self._running.values())
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    async def _loop(self) -> None:
        due = {j.name: time.monotonic() for j in self.jobs}  # everything once at start
        while True:
            self._changed.clear()
            now = time.monotonic()
            for job in self.jobs:
                if job.name not in self._running and due[job.name] <= now:
                    due[job.name] = now + job.period
                    self._running[job.name] = asyncio.create_task(self._attempt(job),
                                                                  name=f"housekeeping-{job.name}")
            waiting = [due[j.name] for j in self.jobs if j.name not in self._running]
            delay = min(waiting) - time.monotonic() if waiting else 3600.0
            await wait_event(self._changed, delay)  # a finished run may make its job schedulable

    async def _attempt(self, job: Job) -> None:
        try:
            removed = await asyncio.to_thread(self.run_job, job)
            if removed is not None and job.after is not None and removed_total(removed):
                job.after(removed)
        except Exception as exc:  # the database is away: the next period tries again
            log.warning("housekeeping %s failed: %s", job.name, exc)
        finally:
            self._running.pop(job.name, None)
            self._changed.set()


class Maintained(Protocol):
    """What housekeeping needs from the controller service."""

    def expire_iocs(self) -> int: ...

    def prune_push_log(self, keep: int = ...) -> int: ...

    def run_feeds(self) -> int: ...

    def decay_iocs(self) -> int: ...


def controller_jobs(
    service: Maintained,
    db: Database,
    settings: Settings,
    *,
    on_iocs_expired: Callable[[], None],
    clock_ms: Callable[[], int] = now_ms,
    push_log_keep: int | None = None,
) -> list[Job]:
    """The controller's jobs with the periods from `settings`. on_iocs_expired wakes the publisher
    (the removal pushes are committed by then); push_log_keep overrides the service's default."""
    grace_ms = int(settings.enrollment_token_grace_seconds * 1000)
    prune: Callable[[], int] = service.prune_push_log
    if push_log_keep is not None:
        prune = functools.partial(service.prune_push_log, keep=push_log_keep)
    return [
        Job("ioc-expiry", settings.housekeeping_ioc_expiry_seconds, service.expire_iocs, "expired IOCs",
            after=lambda _removed: on_iocs_expired()),
        Job("push-log-prune", settings.housekeeping_push_log_seconds, prune, "published push-log rows"),
        Job("feeds", settings.housekeeping_feeds_seconds, service.run_feeds, "feeds refreshed",
            after=lambda _ran: on_iocs_expired()),
        Job("ioc-decay", settings.housekeeping_decay_seconds, service.decay_iocs, "decayed IOCs",
            after=lambda _removed: on_iocs_expired()),
        Job("telemetry-retention", settings.housekeeping_telemetry_seconds,
            lambda: purge(db, clock_ms()), "telemetry rows past retention"),
        Job("enrollment-tokens", settings.housekeeping_tokens_seconds,
            lambda: delete_expired_tokens(db, clock_ms() - grace_ms), "expired enrollment tokens"),
    ]
