"""Gateway credentials and the telemetry stream have limits a REAL broker enforces: subscriptions and
payload per gateway connection, one subject per gateway with a per-subject cap, a full stream that
refuses instead of evicting, byte-bounded pulls at the consumer, and revoked gateways' telemetry
dropped at ingest."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import api
from nats.js.errors import APIError

from controller.nats.auth import (
    GATEWAY_MAX_PAYLOAD,
    GATEWAY_MAX_SUBS,
    gateway_inbox_prefix,
    gateway_telemetry_subject,
)
from controller.service import ControllerService
from controller.store.db import Database
from controller.telemetry import queries
from controller.telemetry.consumer import DURABLE, STREAM, TelemetryConsumer
from controller.telemetry.pull import BoundedPull, MessageBuffer
from gateway_agent.telemetry.collector import MAX_BATCH_BYTES as AGENT_MAX_BATCH
from gateway_agent.telemetry.publisher import batch_subject
from mssp.common.metrics import HOST_EGRESS
from mssp.v1 import telemetry_pb2
from tests.support.waiting import eventually

if TYPE_CHECKING:
    from tests.support.nats import NatsBroker

pytest_plugins = ["tests.support.nats"]

TA, TB = "tenantA", "tenantB"
WAIT = 20.0


async def log_says(broker: NatsBroker, text: str) -> bool:
    return text in await asyncio.to_thread(broker.embedded.log_path.read_text, errors="replace")


async def closed_with(broker: NatsBroker, nc: NatsClient, text: str) -> None:
    async def done() -> bool:
        return not nc.is_connected and await log_says(broker, text)

    await eventually(done)


def sqlite_db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'controller.db'}")
    db.upgrade()
    return db


async def telemetry_stream(broker: NatsBroker, tmp_path: Path, **kw: object) -> tuple[NatsClient, Database]:
    nc = await broker.connect_controller()
    db = sqlite_db(tmp_path)
    await TelemetryConsumer(db, nc, **kw).ensure()  # type: ignore[arg-type]
    return nc, db


def test_gateway_limits_fit_the_agent() -> None:
    """The agent's largest batch (plus its Nats-Msg-Id header) fits; its one subject is the agent's."""
    assert AGENT_MAX_BATCH + 1024 <= GATEWAY_MAX_PAYLOAD
    assert 3 <= GATEWAY_MAX_SUBS <= 16
    assert gateway_telemetry_subject(TA, "gw1") == batch_subject(TA, "gw1")


async def test_gateway_cannot_open_more_subscriptions_than_its_limit(nats_broker: NatsBroker) -> None:
    gw = await nats_broker.connect_gateway(TA, "gwA", allow_reconnect=False)
    inbox = gateway_inbox_prefix("gwA")
    for i in range(GATEWAY_MAX_SUBS):
        await gw.subscribe(f"{inbox}.s{i}")
    await gw.flush()
    assert gw.is_connected
    await gw.subscribe(f"{inbox}.one-too-many")  # the 5,000-subscription amplification stops here
    await closed_with(nats_broker, gw, "maximum subscriptions exceeded")
    # Other gateways are unaffected.
    other = await nats_broker.connect_gateway(TA, "gwB")
    await other.subscribe(f"{gateway_inbox_prefix('gwB')}.x")
    await other.flush()
    assert other.is_connected


async def test_gateway_cannot_publish_above_its_payload_limit(
    nats_broker: NatsBroker, tmp_path: Path
) -> None:
    ctl, db = await telemetry_stream(nats_broker, tmp_path)
    try:
        gw = await nats_broker.connect_gateway(TA, "gwA", allow_reconnect=False)
        subject = gateway_telemetry_subject(TA, "gwA")
        ack = await gw.jetstream(timeout=WAIT).publish(
            subject, b"\0" * AGENT_MAX_BATCH, headers={"Nats-Msg-Id": "gwA:1:nonce"}
        )
        assert ack.seq == 1  # the agent's largest batch goes through
        await gw.publish(subject, b"\0" * (GATEWAY_MAX_PAYLOAD + 1))
        await closed_with(nats_broker, gw, "maximum payload exceeded")
        info = await ctl.jetstream().stream_info(STREAM)
        assert info.state.messages == 1
    finally:
        db.dispose()


async def test_flooding_gateway_hits_its_own_cap_and_evicts_nobody(
    nats_broker: NatsBroker, tmp_path: Path
) -> None:
    ctl, db = await telemetry_stream(nats_broker, tmp_path, max_msgs_per_gateway=5)
    try:
        victim = await nats_broker.connect_gateway(TB, "gwB")
        victim_subject = gateway_telemetry_subject(TB, "gwB")
        await victim.jetstream(timeout=WAIT).publish(victim_subject, b"unconsumed-batch")

        flood = await nats_broker.connect_gateway(TA, "gwA")
        fjs = flood.jetstream(timeout=WAIT)
        subject = gateway_telemetry_subject(TA, "gwA")
        for i in range(5):
            await fjs.publish(subject, f"flood-{i}".encode())
        with pytest.raises(APIError, match=r"(?i)maximum messages per subject"):
            await fjs.publish(subject, b"flood-6")
        # Another subject of its own would dodge the per-subject cap: the JWT does not allow one.
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await flood.jetstream(timeout=1.0).publish(f"{subject}.more", b"x")

        jsm = ctl.jetstream()
        kept = await jsm.get_last_msg(STREAM, victim_subject)
        assert kept.data == b"unconsumed-batch" and kept.seq == 1
        oldest = await jsm.get_msg(STREAM, 2)
        assert oldest.data == b"flood-0"  # not even the flooder's own batches were evicted
        assert (await jsm.stream_info(STREAM)).state.messages == 6
    finally:
        db.dispose()


async def test_full_stream_refuses_new_batches_instead_of_evicting(
    nats_broker: NatsBroker, tmp_path: Path
) -> None:
    ctl, db = await telemetry_stream(nats_broker, tmp_path, max_bytes=2 * 1024 * 1024,
                                     max_msgs_per_gateway=10_000)
    try:
        victim = await nats_broker.connect_gateway(TB, "gwB")
        victim_subject = gateway_telemetry_subject(TB, "gwB")
        await victim.jetstream(timeout=WAIT).publish(victim_subject, b"unconsumed-batch")
        fjs = (await nats_broker.connect_gateway(TA, "gwA")).jetstream(timeout=WAIT)
        subject = gateway_telemetry_subject(TA, "gwA")
        with pytest.raises(APIError, match=r"(?i)maximum bytes|resource"):
            for _ in range(100):
                await fjs.publish(subject, b"\0" * (100 * 1024))
        kept = await ctl.jetstream().get_last_msg(STREAM, victim_subject)
        assert kept.data == b"unconsumed-batch" and kept.seq == 1
    finally:
        db.dispose()


async def test_existing_stream_is_brought_to_the_per_gateway_limits(
    nats_broker: NatsBroker, tmp_path: Path
) -> None:
    """A deployment upgraded in place: the old stream (discard old, no per-subject cap) is updated."""
    ctl = await nats_broker.connect_controller()
    js = ctl.jetstream()
    await js.add_stream(name=STREAM, subjects=["mssp.telemetry.>"], discard=api.DiscardPolicy.OLD)
    gjs = (await nats_broker.connect_gateway(TA, "gwA")).jetstream(timeout=WAIT)
    await gjs.publish(gateway_telemetry_subject(TA, "gwA"), b"unconsumed-batch")
    db = sqlite_db(tmp_path)
    try:
        await TelemetryConsumer(db, ctl, max_msgs_per_gateway=7).ensure()
        info = await js.stream_info(STREAM)
        config = info.config
        assert config.discard == api.DiscardPolicy.NEW and config.discard_new_per_subject
        assert config.max_msgs_per_subject == 7
        assert config.retention == api.RetentionPolicy.INTEREST
        assert info.state.messages == 1  # switched to interest with our durable on it: nothing lost
    finally:
        db.dispose()


async def _publish_batches(nc: NatsClient, gateway_id: str, seqs: range) -> None:
    js = nc.jetstream(timeout=WAIT)
    for seq in seqs:
        data = _batch(TA, gateway_id, seq, 10).SerializeToString()
        await js.publish(gateway_telemetry_subject(TA, gateway_id), data,
                         headers={"Nats-Msg-Id": f"{gateway_id}:{seq}:{time.time_ns()}"})


async def test_consumed_batches_do_not_count_against_the_gateway_cap(
    nats_broker: NatsBroker, tmp_path: Path
) -> None:
    """The cap bounds what is not consumed yet: after the controller acked a full cap's worth, the
    gateway's next batches are stored and counted (under limits retention they were refused for
    max_age, 7 days)."""
    cap = 4
    ctl = await nats_broker.connect_controller()
    db = sqlite_db(tmp_path)
    consumer = TelemetryConsumer(db, ctl, max_msgs_per_gateway=cap, fetch_timeout=0.3, linger=0.05)
    await consumer.start()
    try:
        gw = await nats_broker.connect_gateway(TA, "gwA")
        js = ctl.jetstream()
        for round_ in range(3):
            await _publish_batches(gw, "gwA", range(round_ * cap + 1, (round_ + 1) * cap + 1))

            async def consumed(total: int = (round_ + 1) * cap) -> bool:
                return (consumer.stats.batches == total and await consumer.lag() == 0
                        and (await js.stream_info(STREAM)).state.messages == 0)

            await eventually(consumed)
        assert consumer.stats.rejected == 0 and consumer.stats.retries == 0
        totals = await asyncio.to_thread(queries.totals, db)
        assert totals[("gwA", HOST_EGRESS, "192.0.2.10")] == (3 * cap, 3 * cap * 10, 0)
    finally:
        await consumer.stop()
        db.dispose()


async def test_stream_of_the_previous_version_is_migrated_in_place(
    nats_broker: NatsBroker, tmp_path: Path
) -> None:
    """The previous controller's stream: limits retention with the per-gateway cap, full of acked
    batches, one not yet acked. ensure() switches it: the acked ones go, the unacked one stays and
    is counted, and the gateway's new batches are accepted again."""
    cap = 3
    ctl = await nats_broker.connect_controller()
    js = ctl.jetstream()
    db = sqlite_db(tmp_path)
    consumer = TelemetryConsumer(db, ctl, max_msgs_per_gateway=cap, fetch_timeout=0.3, linger=0.05)
    old = consumer.stream_config()
    old.retention = api.RetentionPolicy.LIMITS
    await js.add_stream(old)
    await js.add_consumer(STREAM, consumer.consumer_config())
    gw = await nats_broker.connect_gateway(TA, "gwA")
    try:
        await _publish_batches(gw, "gwA", range(1, cap + 1))
        with pytest.raises(APIError, match=r"(?i)maximum messages per subject"):
            await _publish_batches(gw, "gwA", range(cap + 1, cap + 2))
        pull = await js.pull_subscribe_bind(DURABLE, STREAM)
        for msg in (await pull.fetch(cap - 1, timeout=WAIT)):  # what the old controller acked
            await msg.ack_sync()
        await pull.unsubscribe()
        assert (await js.stream_info(STREAM)).state.messages == cap  # acked, still stored

        await consumer.ensure()
        info = await js.stream_info(STREAM)
        assert info.config.retention == api.RetentionPolicy.INTEREST
        assert info.state.messages == 1 and info.state.first_seq == cap  # only the unacked batch
        await _publish_batches(gw, "gwA", range(cap + 1, 2 * cap))  # room again
        await consumer.start()

        async def consumed() -> bool:
            return (consumer.stats.batches == cap and await consumer.lag() == 0
                    and (await js.stream_info(STREAM)).state.messages == 0)

        await eventually(consumed)
    finally:
        await consumer.stop()
        db.dispose()


async def test_pulls_are_bounded_by_bytes(nats_broker: NatsBroker, tmp_path: Path) -> None:
    ctl, db = await telemetry_stream(nats_broker, tmp_path)
    try:
        gjs = (await nats_broker.connect_gateway(TA, "gwA")).jetstream(timeout=WAIT)
        size = 100 * 1024
        for i in range(10):
            await gjs.publish(gateway_telemetry_subject(TA, "gwA"), bytes([i]) * size)
        pull = BoundedPull(ctl, STREAM, DURABLE, max_bytes=250 * 1024, largest_message=size)
        await pull.start()
        got: list[int] = []
        while len(got) < 10:
            msgs = await pull.fetch(1000, 2.0)
            assert msgs, "the pull dried up"
            assert sum(len(m.data) for m in msgs) <= 250 * 1024  # 2 of 10, never the whole stream
            for m in msgs:
                got.append(m.data[0])
                await m.ack()
        assert got == list(range(10))
        await pull.stop()

        # A byte bound below the largest message would starve it: the floor lets it through.
        await gjs.publish(gateway_telemetry_subject(TA, "gwA"), b"\1" * size)
        tiny = BoundedPull(ctl, STREAM, DURABLE, max_bytes=1, largest_message=size)
        await tiny.start()
        (msg,) = await tiny.fetch(1000, 2.0)
        assert len(msg.data) == size
        await msg.ack()
        await tiny.stop()
    finally:
        db.dispose()


async def test_consumer_buffer_is_bounded_by_bytes(nats_broker: NatsBroker, tmp_path: Path) -> None:
    ctl, db = await telemetry_stream(nats_broker, tmp_path)
    try:
        gjs = (await nats_broker.connect_gateway(TA, "gwA")).jetstream(timeout=WAIT)
        for _ in range(4):
            await gjs.publish(gateway_telemetry_subject(TA, "gwA"), b"\0" * (100 * 1024))
        pull = BoundedPull(ctl, STREAM, DURABLE, max_bytes=8 * 1024 * 1024, largest_message=1024 * 1024)
        await pull.start()
        msgs: list = []
        while len(msgs) < 4:
            msgs += await pull.fetch(10, 2.0)
        buffer = MessageBuffer(limit=1000, max_bytes=150 * 1024)
        await buffer.put(msgs[:2])  # 200 KiB: now over the byte bound (count is far below its own)
        blocked = asyncio.create_task(buffer.put(msgs[2:]))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not blocked.done()
        assert len(await buffer.take(2, 0.0)) == 2
        await asyncio.wait_for(blocked, WAIT)
        assert buffer.bytes == 200 * 1024
        await pull.stop()
    finally:
        db.dispose()


def _batch(tenant_id: str, gateway_id: str, seq: int, nbytes: int) -> telemetry_pb2.TelemetryBatch:
    end = int(time.time() * 1000)
    batch = telemetry_pb2.TelemetryBatch(tenant_id=tenant_id, gateway_id=gateway_id, batch_seq=seq,
                                         period_start_ms=end - 30_000, period_end_ms=end)
    batch.records.add(metric=HOST_EGRESS, dimension="192.0.2.10", packets=1, bytes=nbytes, count=0)
    return batch


async def test_telemetry_of_a_revoked_gateway_is_dropped_at_ingest(
    nats_broker: NatsBroker, db: Database
) -> None:
    """The broker has not cut the gateway off (its push failed, or it is slow): what the gateway
    published after its revocation is acked and not counted; what came before still counts."""
    svc = ControllerService(db)
    svc.create_tenant("acme")
    ids = {}
    for name in ("gone", "kept"):
        _, secret, _ = svc.add_gateway("acme", name)
        ticket = svc.redeem_enrollment_token(secret)
        svc.complete_enrollment(ticket.gateway_id, cert_serial=name, nats_public_key="", agent_version="t")
        ids[name] = (ticket.tenant_id, ticket.gateway_id)
    conns = {name: await nats_broker.connect_gateway(*ids[name]) for name in ids}

    async def publish(name: str, seq: int, nbytes: int) -> None:
        tenant_id, gateway_id = ids[name]
        await conns[name].jetstream(timeout=WAIT).publish(
            gateway_telemetry_subject(tenant_id, gateway_id),
            _batch(tenant_id, gateway_id, seq, nbytes).SerializeToString(),
            headers={"Nats-Msg-Id": f"{gateway_id}:{seq}:{time.time_ns()}"},
        )

    ctl = await nats_broker.connect_controller(max_reconnect_attempts=-1)
    consumer = TelemetryConsumer(db, ctl, fetch_timeout=0.3, linger=0.05)
    await consumer.ensure()
    await publish("gone", 1, 100)  # before the revocation: counts, even though it is consumed after
    await asyncio.to_thread(svc.revoke_gateway, "acme", "gone")
    await publish("gone", 2, 5_000)  # after it: the connection still works, the batch must not count
    await publish("kept", 1, 7)
    await consumer.start()
    try:
        async def drained() -> bool:
            return await consumer.lag() == 0 and consumer.stats.received == 3

        await eventually(drained)
        assert consumer.stats.revoked == 1 and consumer.stats.batches == 2
        assert consumer.stats.rejected == 0 and consumer.stats.retries == 0
        totals = await asyncio.to_thread(queries.totals, db)
        assert totals[(ids["gone"][1], HOST_EGRESS, "192.0.2.10")][1] == 100
        assert totals[(ids["kept"][1], HOST_EGRESS, "192.0.2.10")][1] == 7
    finally:
        await consumer.stop()
