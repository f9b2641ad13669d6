"""A telemetry worker outlives faults: a database that goes away while the consumer reads enrollment
times for validation gets the chunk retried and counted once it is back, and an unexpected error in
a chunk never ends a worker (nothing would restart it). Real nats-server, real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from controller.store.db import Database
from controller.store.models import Gateway, Tenant
from controller.telemetry import queries
from controller.telemetry.bounds import EnrollmentTimes
from controller.telemetry.consumer import TelemetryConsumer
from controller.telemetry.consumer_state import Outcome
from gateway_agent.telemetry.publisher import MSG_ID_HEADER, batch_subject
from mssp.common.metrics import HOST_EGRESS
from mssp.v1 import telemetry_pb2
from tests.support.nats import NatsBroker
from tests.support.postgres import create_database
from tests.support.waiting import eventually

TA, GW = "tenantA", "gw1"


def enrolled_fleet(db: Database) -> None:
    now = int(time.time() * 1000)
    with db.session() as s:
        s.add(Tenant(id=TA, name="acme", plan="standard", created_at_ms=now - 3600_000))
        s.flush()
        s.add(Gateway(id=GW, tenant_id=TA, name=GW, status="enrolled",
                      created_at_ms=now - 3600_000, enrolled_at_ms=now - 3600_000))


async def publish(nats_broker: NatsBroker, seqs: range, nbytes: int) -> None:
    js = (await nats_broker.connect_gateway(TA, GW)).jetstream(timeout=10)
    end = int(time.time() * 1000)
    for seq in seqs:
        b = telemetry_pb2.TelemetryBatch(gateway_id=GW, tenant_id=TA, batch_seq=seq,
                                         period_start_ms=end - 30_000, period_end_ms=end)
        b.records.add(metric=HOST_EGRESS, dimension="192.0.2.10", packets=1, bytes=nbytes)
        await js.publish(batch_subject(TA, GW), b.SerializeToString(),
                         headers={MSG_ID_HEADER: f"{GW}:{seq}:{time.time_ns()}"})


def workers_alive(consumer: TelemetryConsumer) -> bool:
    return len(consumer._tasks) == 1 + consumer.workers and not any(t.done() for t in consumer._tasks)


class Outage:
    """Takes one PostgreSQL database away (new connections refused, open ones killed) and back."""

    def __init__(self, admin_uri: str, url: str) -> None:
        self.admin_uri = admin_uri
        self.name = make_url(url).database

    def _run(self, *sql: str) -> None:
        with psycopg.connect(self.admin_uri, autocommit=True) as conn:
            for statement in sql:
                conn.execute(statement)  # the name is ours: hex only

    def down(self) -> None:
        self._run(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false',
                  f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}'")

    def up(self) -> None:
        self._run(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
def pg(postgres_server: str) -> Iterator[tuple[Database, Outage]]:
    url = create_database(postgres_server)
    db = Database(url)
    db.upgrade()
    outage = Outage(postgres_server, url)
    try:
        yield db, outage
    finally:
        outage.up()
        db.dispose()


@pytest.mark.postgres
async def test_database_outage_during_validation_is_retried_and_the_worker_survives(
    nats_broker: NatsBroker, pg: tuple[Database, Outage]
) -> None:
    db, outage = pg
    await asyncio.to_thread(enrolled_fleet, db)
    nc = await nats_broker.connect_controller()
    consumer = TelemetryConsumer(db, nc, enrolled_at=EnrollmentTimes(db), retry_delay=0.2, ack_wait=2.0,
                                 fetch_timeout=0.3, linger=0.05)
    await consumer.start()
    try:
        await asyncio.to_thread(outage.down)  # enrollment times not cached yet: validation reads them
        await publish(nats_broker, range(1, 4), 100)

        async def retried() -> bool:
            return consumer.stats.retries >= 3 and consumer.stats.last_error.startswith("enrollment:")

        await eventually(retried)
        assert consumer.stats.batches == 0 and consumer.stats.rejected == 0
        assert workers_alive(consumer)

        await asyncio.to_thread(outage.up)

        async def counted(n: int) -> bool:
            return consumer.stats.batches == n and await consumer.lag() == 0

        await eventually(lambda: counted(3))
        await publish(nats_broker, range(4, 5), 1)  # and it keeps running
        await eventually(lambda: counted(4))
        assert workers_alive(consumer) and consumer.stats.rejected == 0
        totals = await asyncio.to_thread(queries.totals, db)
        assert totals == {(GW, HOST_EGRESS, "192.0.2.10"): (4, 301, 0)}
    finally:
        await consumer.stop()


class FailsOnce(TelemetryConsumer):
    """A bug in the worker's own code (not a database fault): the first chunk raises."""

    failed = False

    def _work(self, items: list[tuple[str, bytes]], stored: list[int] | None = None) -> list[Outcome]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("unexpected")
        return super()._work(items, stored)


async def test_an_unexpected_error_naks_the_chunk_and_the_worker_goes_on(
    nats_broker: NatsBroker, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'controller.db'}")
    db.upgrade()
    nc = await nats_broker.connect_controller()
    consumer = FailsOnce(db, nc, workers=1, retry_delay=0.2, ack_wait=300.0, fetch_timeout=0.3, linger=0.05)
    await consumer.start()
    try:
        await publish(nats_broker, range(1, 3), 10)

        async def counted() -> bool:
            return consumer.stats.batches == 2 and await consumer.lag() == 0

        await eventually(counted)  # well before ack_wait: the failed chunk was naked, not left to expire
        assert consumer.failed and consumer.stats.last_error.startswith("worker: RuntimeError")
        assert workers_alive(consumer)
    finally:
        await consumer.stop()
        db.dispose()
