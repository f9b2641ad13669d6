"""Large pushes end to end over real gRPC (mTLS) and a real nats-server: multi-part deltas, a push
too large for NATS that must not block the ones behind it, and the Sync rate limit."""

from __future__ import annotations

import asyncio

import grpc
from nats.aio.msg import Msg
from sqlalchemy import insert

from controller import outbox
from controller.grpc_api.gateway import SYNC_BURST
from controller.service import ControllerService
from controller.services import channels
from controller.simulation import SimulatedAgent, wait_until
from controller.store.models import Ioc
from gateway_agent.state import StateChange
from mssp.common.channels import GLOBAL_CHANNEL, channel_subject
from mssp.common.clock import now_ms
from mssp.common.parts import MAX_PUSH_BYTES, MAX_SINGLE_PUSH_BYTES
from mssp.v1 import common_pb2, gateway_pb2, push_pb2
from tests.support.fleet import RunningController


def domains(count: int, tag: str, pad: int = 0) -> list[common_pb2.Ioc]:
    return [common_pb2.Ioc(type=common_pb2.IOC_TYPE_DOMAIN, value=f"{tag}{i:07d}.{'x' * pad}bulk.example",
                           confidence=80, source="bulk-feed") for i in range(count)]


def bulk_import(svc: ControllerService, iocs: list[common_pb2.Ioc], *, rows: bool = True) -> int:
    """One transaction with many indicators and their single push, as a feed import commits it."""
    delta = push_pb2.IocDelta(upsert=iocs)
    with svc.db.session() as s:
        if rows:
            now = now_ms()
            s.connection().execute(insert(Ioc), [
                {"channel": GLOBAL_CHANNEL, "type": i.type, "value": i.value, "source": i.source,
                 "confidence": i.confidence, "created_at_ms": now, "expires_at_ms": 0} for i in iocs])
        return channels.append_push(s, GLOBAL_CHANNEL, iocs=delta)


class PushMonitor:
    """What the controller put on a channel's subject (a plain subscriber on the real broker)."""

    def __init__(self) -> None:
        self.pushes: list[push_pb2.Push] = []

    async def on_message(self, msg: Msg) -> None:
        push = push_pb2.Push.FromString(push_pb2.SignedEnvelope.FromString(msg.data).payload)
        if push.WhichOneof("body") != "beacon":
            self.pushes.append(push)

    def seqs(self) -> set[int]:
        return {p.seq for p in self.pushes}


async def enrolled(controller: RunningController) -> tuple[SimulatedAgent, PushMonitor]:
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "gw0")
    await wait_until(sim.agent.synced.is_set)
    monitor = PushMonitor()
    assert controller.app.nc is not None
    await controller.app.nc.subscribe(channel_subject(GLOBAL_CHANNEL), cb=monitor.on_message)
    await controller.app.nc.flush()
    return sim, monitor


async def test_a_multi_part_delta_is_applied_once_after_its_last_part(controller: RunningController) -> None:
    sim, monitor = await enrolled(controller)
    agent = sim.agent
    applied: list[StateChange] = []
    chained = agent.on_applied
    agent.on_applied = lambda change, at: (applied.append(change), chained and chained(change, at))
    steps: list[tuple[str, int, int, bool, int]] = []  # body, part index, count, applied?, iocs after
    real_apply = agent.state.apply

    def observed(push: push_pb2.Push) -> StateChange | None:
        change = real_apply(push)
        steps.append((push.WhichOneof("body") or "", push.part.index, push.part.count, change is not None,
                      agent.state.ioc_count()))
        return change

    agent.state.apply = observed  # type: ignore[method-assign]
    iocs = domains(80_000, "p")
    assert controller.app.service is not None and controller.app.publisher is not None
    seq = await asyncio.to_thread(bulk_import, controller.app.service, iocs)
    controller.app.publisher.wake()
    # on_applied runs once the backend enforced the change (the in-memory state moves first).
    await wait_until(lambda: any(c.seq == seq for c in applied), within=60)

    parts = [p for p in monitor.pushes if p.seq == seq]
    assert len(parts) >= 3 and all(p.WhichOneof("body") == "part" for p in parts)  # 2.4 MB: 3 envelopes
    assert all(p.ByteSize() <= MAX_SINGLE_PUSH_BYTES + 200 for p in parts)
    # The parts may come by NATS and again by a resync (a heartbeat can see the new head first): the
    # second copy is refused as stale at its last part. Either way one last part applies, once.
    part_steps = [s for s in steps if s[0] == "part"]
    last = len(parts) - 1
    assert part_steps[: len(parts)] == [("part", i, len(parts), i == last, 80_000 if i == last else 0)
                                        for i in range(len(parts))]
    assert sum(s[3] for s in part_steps) == 1
    assert [s for s in steps if s[0] == "iocs"] == [("iocs", 0, 0, True, 80_000)]  # the whole delta
    mine = [c for c in applied if (c.channel, c.seq) == (GLOBAL_CHANNEL, seq)]
    assert len(mine) == 1 and len(mine[0].added) == 80_000
    # The journal holds the whole delta, not its last part: a restart restores all of it.
    restored = await asyncio.to_thread(agent._reload_applied)
    assert restored.versions().global_seq == seq and restored.ioc_count() == 80_000


async def test_a_push_too_large_for_nats_does_not_block_the_pushes_behind_it(
    controller: RunningController,
) -> None:
    sim, monitor = await enrolled(controller)
    svc, publisher = controller.app.service, controller.app.publisher
    assert svc is not None and publisher is not None
    # the start-up resync must be over, or the gap's resync coalesces into it and is not counted
    await wait_until(lambda: not (sim.agent._resync_queued or sim.agent.resyncing), within=30)
    await asyncio.sleep(0.5)
    resyncs = sim.agent.push_stats.resyncs
    huge = domains(240_000, "h", pad=40)  # ~17 MiB in one delta: more than any push may take in parts
    assert push_pb2.IocDelta(upsert=huge).ByteSize() > MAX_PUSH_BYTES
    stuck = await asyncio.to_thread(bulk_import, svc, huge, rows=False)
    publisher.wake()
    info = await controller.op.add_ioc("198.51.100.77")
    assert info.seq == stuck + 1
    await wait_until(lambda: info.seq in monitor.seqs(), within=30)  # published over NATS anyway
    assert stuck not in monitor.seqs()
    # The agent sees the gap and converges by resync: a snapshot, never the 17 MiB delta.
    await wait_until(lambda: sim.versions().global_seq == info.seq and "198.51.100.77" in sim.ioc_values(),
                     within=30)
    # counted when the Sync stream ends, a moment after its last part was applied
    await wait_until(lambda: sim.agent.push_stats.resyncs > resyncs, within=30)
    assert sim.agent.state.ioc_count() == 1
    errors = await asyncio.to_thread(outbox.publish_errors, svc.db)
    assert [(e.channel, e.seq) for e in errors] == [(GLOBAL_CHANNEL, stuck)]
    assert "resync" in errors[0].error and "parts" in errors[0].error
    fleet = await controller.op.fleet()
    assert [(e.channel, e.seq) for e in fleet.push_errors] == [(GLOBAL_CHANNEL, stuck)]
    # Later pushes keep flowing as deltas.
    later = await controller.op.add_ioc("198.51.100.78")
    await wait_until(lambda: "198.51.100.78" in sim.ioc_values())
    assert later.seq in monitor.seqs()


async def test_sync_is_rate_limited_per_gateway(controller: RunningController) -> None:
    sim, _ = await enrolled(controller)
    stub = sim.agent._stub
    assert stub is not None
    refused: grpc.aio.AioRpcError | None = None
    for _ in range(SYNC_BURST + 10):
        try:
            async for _ in stub.Sync(gateway_pb2.SyncRequest(applied=sim.versions()), timeout=10):
                pass
        except grpc.aio.AioRpcError as exc:
            refused = exc
            break
    assert refused is not None, "Sync never refused"
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many resyncs" in (refused.details() or "")
