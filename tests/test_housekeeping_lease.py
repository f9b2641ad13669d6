"""Housekeeping leases on a real SQLite and PostgreSQL: several controllers on one database run each
job once per period, not once per replica, and a lease left by a dead controller is taken over."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from controller.housekeeping import LEASE_FACTOR, Housekeeper, Job
from controller.store.db import Database
from controller.store.lease import lease_holder, take_lease
from mssp.common.clock import now_ms
from tests.support.waiting import eventually

T0 = 1_700_000_000_000
PERIOD_MS = 10_000


@pytest.fixture
def other(db: Database, db_url: str) -> Iterator[Database]:
    """The same database as `db`, opened by a second controller (its own engine and pool)."""
    second = Database(db_url)
    try:
        yield second
    finally:
        second.dispose()


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def counting_job(runs: list[str], holder: str, name: str = "probe", period: float = PERIOD_MS / 1000) -> Job:
    def body() -> int:
        runs.append(holder)
        return 0

    return Job(name, period, body, "nothing")


def race(*calls: Callable[[], object]) -> list[object]:
    """Run the calls at the same moment, one thread each."""
    barrier = threading.Barrier(len(calls))

    def go(call: Callable[[], object]) -> object:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


def test_two_controllers_run_a_job_once_per_period(db: Database, other: Database) -> None:
    clock = Clock(T0)
    runs: list[str] = []
    job_a, job_b = counting_job(runs, "a"), counting_job(runs, "b")
    a = Housekeeper(db, [job_a], holder="a", clock_ms=clock)
    b = Housekeeper(other, [job_b], holder="b", clock_ms=clock)
    for period in range(5):  # each controller tries once per period, at the same moment
        clock.ms = T0 + period * PERIOD_MS
        results = race(lambda: a.run_job(job_a), lambda: b.run_job(job_b))
        assert sum(r is not None for r in results) == 1
        assert len(runs) == period + 1
    assert a.stats["probe"].runs + b.stats["probe"].runs == 5
    assert a.stats["probe"].skipped + b.stats["probe"].skipped == 5
    assert len(set(runs)) == 1  # the holder renews before its lease runs out: it keeps the job


def test_an_expired_lease_is_taken_over(db: Database, other: Database) -> None:
    ttl = int(PERIOD_MS * LEASE_FACTOR)
    assert take_lease(db, "probe", "a", ttl, T0)
    assert not take_lease(other, "probe", "b", ttl, T0 + PERIOD_MS)  # a's lease still runs
    assert not take_lease(other, "probe", "b", ttl, T0 + ttl)  # ... up to its last millisecond
    assert lease_holder(db, "probe") == ("a", T0 + ttl)
    # a is gone (no renewal): once its lease expired, b takes the job, and a coming back does not.
    assert take_lease(other, "probe", "b", ttl, T0 + ttl + 1)
    assert not take_lease(db, "probe", "a", ttl, T0 + ttl + 2)
    assert lease_holder(db, "probe") == ("b", T0 + 2 * ttl + 1)
    assert take_lease(other, "probe", "b", ttl, T0 + ttl + 5)  # the holder renews any time
    assert take_lease(db, "other-job", "a", ttl, T0 + ttl + 5)  # leases are per job


def test_the_first_take_of_a_job_has_one_winner(db: Database, other: Database) -> None:
    """No row yet: every controller inserts it at once; the unique key lets exactly one win."""
    dbs = [db, other] * 4
    results = race(*[lambda d=d, i=i: take_lease(d, "fresh", f"c{i}", PERIOD_MS, T0)
                     for i, d in enumerate(dbs)])
    assert sorted(results) == [False] * 7 + [True]
    holder = lease_holder(db, "fresh")
    assert holder is not None and holder[0] == f"c{results.index(True)}"


async def test_two_housekeeping_loops_share_each_period(db: Database, other: Database) -> None:
    """Two controllers' loops on one database: the job keeps running, never for two at once, and a
    run by the other controller only ever starts after the previous holder's lease expired."""
    period = 0.2
    ttl = int(period * LEASE_FACTOR * 1000)
    taken: list[tuple[str, int]] = []  # (holder, lease taken at), read back inside each run

    def job(database: Database, holder: str) -> Job:
        def body() -> int:
            got = lease_holder(database, "shared")
            assert got is not None and got[0] == holder
            taken.append((holder, got[1] - ttl))
            return 0

        return Job("shared", period, body, "nothing")

    a = Housekeeper(db, [job(db, "a")], holder="a")
    b = Housekeeper(other, [job(other, "b")], holder="b")
    await a.start()
    await b.start()
    try:
        def settled() -> bool:  # several runs, and the other controller was refused at least once
            return len(taken) >= 6 and a.stats["shared"].skipped + b.stats["shared"].skipped > 0

        await eventually(settled, within=120.0)
    finally:
        await a.stop()
        await b.stop()
    assert a.stats["shared"].runs + b.stats["shared"].runs == len(taken)
    for (prev_holder, prev_at), (holder, at) in itertools.pairwise(taken):
        assert at > prev_at
        if holder != prev_holder:
            assert at > prev_at + ttl  # the other controller waited for the lease to expire
    assert a.stats["shared"].errors == b.stats["shared"].errors == 0


async def test_a_failing_job_is_logged_and_retried(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def body() -> int:
        calls.append(now_ms())
        if len(calls) == 1:
            raise RuntimeError("database away")
        return 2

    keeper = Housekeeper(db, [Job("flaky", 0.1, body, "things")])
    with caplog.at_level("INFO", logger="mssp.controller.housekeeping"):
        await keeper.start()
        try:
            await eventually(lambda: keeper.stats["flaky"].runs >= 1)
        finally:
            await keeper.stop()
    assert keeper.stats["flaky"].errors == 1 and keeper.stats["flaky"].removed >= 2
    assert "housekeeping flaky failed: database away" in caplog.text
    assert "housekeeping flaky: removed 2 things" in caplog.text


def test_the_lease_table_and_delete_indexes_match_the_models(db: Database) -> None:
    """0004_housekeeping and the models describe the same schema."""
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    mine = {"housekeeping_lease", "enrollment_token", "rollup_hourly"}
    assert [d for d in diffs if mine & set(_tables_in(d))] == []
    inspector = inspect(db.engine)
    columns = {c["name"] for c in inspector.get_columns("housekeeping_lease")}
    assert columns == {"job", "holder", "expires_at_ms"}
    def indexes(table: str) -> set[str]:
        return {str(i["name"]) for i in inspector.get_indexes(table)}

    assert "ix_enrollment_token_expires_at_ms" in indexes("enrollment_token")
    assert "ix_rollup_hourly_hour_ms" in indexes("rollup_hourly")


def _tables_in(diff: object) -> list[str]:
    found: list[str] = []
    for part in diff if isinstance(diff, list) else [diff]:
        for item in part if isinstance(part, tuple) else [part]:
            name = item if isinstance(item, str) else getattr(item, "name", None)
            table = getattr(item, "table", None)
            found += [n for n in (name, getattr(table, "name", None)) if isinstance(n, str)]
    return found


HOUSEKEEPING_DELETES = {  # table: (filter, the index that may serve it)
    "telemetry_batch_seen": ("period_end_ms < 5", ("ix_telemetry_batch_seen_period_end_ms",)),
    "detection_event": ("at_ms < 5", ("ix_detection_event_at",)),
    "rollup_hourly": ("hour_ms < 5", ("ix_rollup_hourly_hour_ms",)),
    "enrollment_token": ("expires_at_ms < 5", ("ix_enrollment_token_expires_at_ms",)),
    # A unique constraint's index has no name of its own on SQLite.
    "push_log": ("channel = 'global' AND seq <= 5 AND published",
                 ("uq_push_channel_seq", "sqlite_autoindex_push_log_1")),
}


@pytest.mark.parametrize("table", sorted(HOUSEKEEPING_DELETES))
def test_housekeeping_deletes_are_index_backed(db: Database, table: str) -> None:
    where, indexes = HOUSEKEEPING_DELETES[table]
    sql = f"DELETE FROM {table} WHERE {where}"  # table and filter: the constants above
    with db.engine.begin() as conn:
        if db.is_sqlite:
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        else:  # tiny tables: make the planner say whether an index can serve the filter at all
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " ".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))
    assert any(index in plan for index in indexes), plan
