"""Telemetry end to end on a real nats-server (JetStream on disk) and a real store: agent collector ->
spool -> publisher (gateway-scoped credentials) -> stream -> durable consumer -> SQL rollups.

Totals at the controller must equal what the agents' counters measured, through a broker crash
(SIGKILL, restart on the same store dir) and an agent that spools through an outage and replays.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import api
from sqlalchemy import select

from controller.store.db import Database
from controller.telemetry import queries
from controller.telemetry.consumer import STREAM, TelemetryConsumer
from controller.telemetry.models import GatewayHealth
from gateway_agent.counters import CounterSample
from gateway_agent.telemetry.collector import TelemetryCollector
from gateway_agent.telemetry.publisher import TelemetryPublisher, batch_subject
from gateway_agent.telemetry.spool import TelemetrySpool
from mssp.common.metrics import CATEGORY_BYTES, HOST_EGRESS
from mssp.v1 import telemetry_pb2
from tests.support.nats import NatsBroker
from tests.support.waiting import eventually

TA, TB = "tenantA", "tenantB"
Totals = dict[tuple[str, str, str], tuple[int, int, int]]


def gateway_health(db: Database, tenant_id: str) -> list[dict[str, Any]]:
    """The newest reported agent health per gateway of a tenant, as stored."""
    table = GatewayHealth.__table__  # type: ignore[attr-defined]
    stmt = select(table).where(table.c.tenant_id == tenant_id).order_by(table.c.gateway_id)
    with db.read_engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


class KernelCounters:
    """Cumulative counters as the kernel keeps them: only ever grow (until a reset)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], list[int]] = {}

    def add(self, metric: str, dimension: str, packets: int, nbytes: int) -> None:
        v = self.values.setdefault((metric, dimension), [0, 0])
        v[0] += packets
        v[1] += nbytes

    def read_counters(self) -> list[CounterSample]:
        return [CounterSample(m, d, p, b) for (m, d), (p, b) in self.values.items()]


@dataclass
class Agent:
    """The telemetry half of one gateway agent."""

    gateway_id: str
    tenant_id: str
    counters: KernelCounters
    collector: TelemetryCollector
    spool: TelemetrySpool
    publisher: TelemetryPublisher
    nc: NatsClient | None
    online: bool = True
    measured_total: Totals | None = None

    def traffic(self, step: int) -> None:
        self.counters.add(HOST_EGRESS, "192.0.2.10", 3, 1000 + step)
        self.counters.add(HOST_EGRESS, f"192.0.2.{20 + step % 4}", 1, 77)
        self.counters.add(CATEGORY_BYTES, "cloud-storage|192.0.2.10", 2, 500 * step)

    def measured(self) -> Totals:
        return {(self.gateway_id, m, d): (p, b, 0) for (m, d), (p, b) in self.counters.values.items()}


async def make_agent(broker: NatsBroker, tmp: Path, tenant: str, gateway: str, **spool_kw: int) -> Agent:
    nc = await broker.connect_gateway(tenant, gateway, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    counters = KernelCounters()
    collector = TelemetryCollector(tmp / gateway / "telemetry", tenant_id=tenant, gateway_id=gateway,
                                   source=counters)
    spool = TelemetrySpool(tmp / gateway / "spool", **spool_kw)
    agent = Agent(gateway, tenant, counters, collector, spool, None, nc)  # type: ignore[arg-type]
    agent.publisher = TelemetryPublisher(
        collector, spool, lambda: agent.nc if agent.online else None, interval=3600, ack_timeout=1.0
    )
    return agent


async def start_consumer(broker: NatsBroker, db: Database) -> TelemetryConsumer:
    nc = await broker.connect_controller(max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    consumer = TelemetryConsumer(db, nc, fetch_timeout=0.3, ack_wait=2.0, linger=0.05)
    await consumer.start()
    return consumer


async def controller_matches(db: Database, agents: list[Agent]) -> bool:
    want: Totals = {}
    for a in agents:
        want.update(a.measured())
    return await asyncio.to_thread(queries.totals, db) == want


async def keep_stream(nc: NatsClient) -> None:
    """A second durable that never acks: under interest retention the controller's ack removes a
    batch, and this one keeps every stored batch readable for stream_seqs."""
    await nc.jetstream().add_consumer(STREAM, api.ConsumerConfig(
        durable_name="witness", ack_policy=api.AckPolicy.EXPLICIT, deliver_policy=api.DeliverPolicy.ALL))


async def stream_seqs(nc: NatsClient, gateway_id: str) -> list[int]:
    """batch_seq of every message in the stream for one gateway, in stream order (see keep_stream)."""
    js = nc.jetstream()
    info = await js.stream_info(STREAM)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(STREAM, seq)
        batch = telemetry_pb2.TelemetryBatch.FromString(msg.data or b"")
        if batch.gateway_id == gateway_id:
            out.append(batch.batch_seq)
    return out


async def test_agent_to_sql_totals_equal_the_counters(
    nats_broker: NatsBroker, db: Database, tmp_path: Path
) -> None:
    consumer = await start_consumer(nats_broker, db)
    try:
        agents = [await make_agent(nats_broker, tmp_path, TA, "gw1"),
                  await make_agent(nats_broker, tmp_path, TB, "gw2")]
        for step in range(1, 6):
            for a in agents:
                a.traffic(step)
                await a.publisher.tick()
        assert all(len(a.spool) == 0 for a in agents)
        await eventually(lambda: controller_matches(db, agents))
        assert consumer.stats.rejected == 0
        health = await asyncio.to_thread(gateway_health, db, TA)
        assert [(h["gateway_id"], h["spool_drops"]) for h in health] == [("gw1", 0)]
        assert health[0]["rss_bytes"] > 0
    finally:
        await consumer.stop()


async def test_broker_sigkill_and_restart_mid_stream_keeps_totals_exact(
    nats_broker: NatsBroker, db: Database, tmp_path: Path
) -> None:
    consumer = await start_consumer(nats_broker, db)
    try:
        agents = [await make_agent(nats_broker, tmp_path, TA, f"gw{i}") for i in range(3)]
        await ticks(agents, range(1, 4))  # flowing end to end
        await consumer.stop()  # the controller is down: acked batches pile up in the stream
        await ticks(agents, range(4, 7))
        assert all(len(a.spool) == 0 for a in agents)
        await nats_broker.embedded.kill()  # SIGKILL right after the PubAcks; the store dir stays
        await ticks(agents, range(7, 10))  # publishes fail: batches stay in the agents' spools
        assert all(len(a.spool) == 3 for a in agents)
        await nats_broker.embedded.start()

        async def reconnected() -> bool:
            return all(a.nc is not None and a.nc.is_connected for a in agents)

        await eventually(reconnected)
        consumer = await start_consumer(nats_broker, db)
        await ticks(agents, range(10, 12))
        assert all(len(a.spool) == 0 for a in agents)
        await eventually(lambda: controller_matches(db, agents))
        assert consumer.stats.rejected == 0
    finally:
        await consumer.stop()


async def ticks(agents: list[Agent], steps: range) -> None:
    for step in steps:
        for a in agents:
            a.traffic(step)
            await a.publisher.tick()


async def test_agent_offline_spools_then_replays_in_order(
    nats_broker: NatsBroker, db: Database, tmp_path: Path
) -> None:
    consumer = await start_consumer(nats_broker, db)
    await keep_stream(consumer.nc)
    try:
        agent = await make_agent(nats_broker, tmp_path, TA, "gw1")
        agent.traffic(1)
        await agent.publisher.tick()
        agent.online = False  # the router's uplink is down
        for step in range(2, 12):
            agent.traffic(step)
            await agent.publisher.tick()
        assert len(agent.spool) == 10
        # The agent restarts while offline: spool and counters' baseline come back from disk.
        agent.collector = TelemetryCollector(agent.collector.directory, tenant_id=TA, gateway_id="gw1",
                                             source=agent.counters)
        agent.spool = TelemetrySpool(agent.spool.directory)
        agent.publisher = TelemetryPublisher(
            agent.collector, agent.spool, lambda: agent.nc if agent.online else None, interval=3600
        )
        agent.traffic(12)
        await agent.publisher.tick()
        assert len(agent.spool) == 11
        agent.online = True
        assert await agent.publisher.drain() == 11
        await eventually(lambda: controller_matches(db, [agent]))
        seqs = await stream_seqs(consumer.nc, "gw1")
        assert seqs == sorted(seqs) and len(seqs) == 12 and len(set(seqs)) == 12
    finally:
        await consumer.stop()


async def test_spool_overflow_drops_oldest_and_reports_it(
    nats_broker: NatsBroker, db: Database, tmp_path: Path
) -> None:
    """A bounded spool loses the oldest batches in a long outage: the controller gets exactly the rest,
    and learns how many were dropped from the agent's health."""
    consumer = await start_consumer(nats_broker, db)
    try:
        agent = await make_agent(nats_broker, tmp_path, TA, "gw1", max_batches=4)
        agent.online = False
        made: dict[int, telemetry_pb2.TelemetryBatch] = {}
        for step in range(1, 9):
            agent.traffic(step)
            seq = await agent.publisher.tick()
            made[seq] = telemetry_pb2.TelemetryBatch.FromString(agent.spool.read(seq) or b"")
        assert agent.spool.drops == 4
        survivors = [made[seq] for seq in agent.spool.seqs()]
        agent.online = True
        assert await agent.publisher.drain() == 4  # what the reconnected callback triggers
        agent.traffic(9)
        last = await agent.publisher.tick()
        assert len(agent.spool) == 0
        with_last = [*survivors, telemetry_pb2.TelemetryBatch(gateway_id="gw1", batch_seq=last)]

        async def health_reports_drops() -> bool:
            health = await asyncio.to_thread(gateway_health, db, TA)
            return bool(health) and health[0]["batch_seq"] == last

        await eventually(health_reports_drops)
        health = await asyncio.to_thread(gateway_health, db, TA)
        assert health[0]["spool_drops"] == 4
        # Exactly the surviving batches plus the last one: measured minus what the dropped ones carried.
        dropped = [b for seq, b in made.items() if seq not in {x.batch_seq for x in with_last}]
        want = agent.measured()
        for batch in dropped:
            for r in batch.records:
                p, n, c = want[("gw1", r.metric, r.dimension)]
                want[("gw1", r.metric, r.dimension)] = (p - r.packets, n - r.bytes, c)
        got = await asyncio.to_thread(queries.totals, db)
        assert got == {k: v for k, v in want.items() if v != (0, 0, 0)}
    finally:
        await consumer.stop()


async def test_gateway_cannot_publish_into_another_tenants_telemetry(
    nats_broker: NatsBroker, db: Database, tmp_path: Path
) -> None:
    consumer = await start_consumer(nats_broker, db)
    try:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        gw = await nats_broker.connect_gateway(TA, "gwA", error_cb=on_error)
        forged = telemetry_pb2.TelemetryBatch(gateway_id="gwB", tenant_id=TB, batch_seq=1,
                                              period_start_ms=1, period_end_ms=2)
        with pytest.raises(Exception):  # no PubAck: the broker dropped it  # noqa: B017
            await gw.jetstream(timeout=1.0).publish(batch_subject(TB, "gwB"), forged.SerializeToString())

        async def refused() -> bool:
            return any("permissions violation" in e and f"mssp.telemetry.{TB.lower()}" in e for e in errors)

        await eventually(refused)
        info = await consumer.nc.jetstream().stream_info(STREAM)
        assert info.state.messages == 0
        assert await asyncio.to_thread(queries.totals, db) == {}
        assert consumer.stats.received == 0
        assert isinstance(info.config, api.StreamConfig) and info.config.duplicate_window == 120
    finally:
        await consumer.stop()
