"""Job leases: with several controllers on one database, a housekeeping job runs once per period,
not once per replica.

A lease is a row (job, holder, expires_at_ms). Taking it is one conditional UPDATE
(WHERE expires_at_ms < now OR holder = me) checked by its rowcount, so on PostgreSQL a concurrent
taker blocks on the row and then finds it no longer expired, and on SQLite the write session
(BEGIN IMMEDIATE) serializes takers. The first take of a job INSERTs the row; two replicas racing
there both insert, and the unique key lets one win (the loser's savepoint rolls back). Works the
same on SQLite and PostgreSQL, unlike an advisory lock. Times are wall-clock milliseconds of the
controllers, so their clocks should agree to well within a period.
"""

from __future__ import annotations

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from controller.store.db import Database
from controller.store.models import HousekeepingLease


def take_lease(db: Database, job: str, holder: str, ttl_ms: int, now_ms: int) -> bool:
    """True if `holder` holds `job` until now_ms + ttl_ms: it was free, expired, or already ours."""
    until = now_ms + ttl_ms
    with db.session() as s:
        free = or_(col(HousekeepingLease.expires_at_ms) < now_ms, col(HousekeepingLease.holder) == holder)
        taken = s.exec(  # type: ignore[call-overload]
            update(HousekeepingLease)
            .where(col(HousekeepingLease.job) == job, free)
            .values(holder=holder, expires_at_ms=until)
        )
        if taken.rowcount == 1:
            return True
        if s.exec(select(HousekeepingLease.job).where(col(HousekeepingLease.job) == job)).first() is not None:
            return False  # held by another replica and not expired
        try:
            with s.begin_nested():  # the first take of this job: insert, a racing replica may win
                s.add(HousekeepingLease(job=job, holder=holder, expires_at_ms=until))
        except IntegrityError:
            return False
        return True


def lease_holder(db: Database, job: str) -> tuple[str, int] | None:
    """(holder, expires_at_ms) of a job's lease, None before its first run."""
    with db.session(readonly=True) as s:
        row = s.get(HousekeepingLease, job)
        return None if row is None else (row.holder, row.expires_at_ms)
