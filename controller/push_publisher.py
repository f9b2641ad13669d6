"""Outbox -> NATS. Changes are committed with their push in one transaction (the outbox); this loop
signs and publishes them in order after the commit and marks them sent only once the broker has
them. Beacons announce each channel's head so that an idle agent that missed a push notices.

A push too large for one broker message goes out in parts (mssp.common.parts). One too large even
for that is taken out of the outbox with its error recorded and logged: it never blocks the rows
behind it, and agents get it by resync (the next push or beacon shows them the gap). Parsing and
signing run in a worker thread, never on the event loop. IOC expiry (controller/housekeeping.py)
wakes this loop once its removal pushes are committed."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient

from controller import outbox
from controller.metrics.instruments import NO_METRICS, PushMetrics
from controller.service import ControllerService
from controller.signing_keys import SigningKeys
from mssp.common.aio import cancel_and_wait, wait_event
from mssp.common.channels import GLOBAL_CHANNEL, channel_subject
from mssp.common.envelope import sign_push, sign_split
from mssp.common.parts import MAX_ENVELOPE_BYTES, MAX_PUSH_BYTES, PushTooLarge
from mssp.v1 import common_pb2, push_pb2

log = logging.getLogger("mssp.controller.push")

FLUSH_TIMEOUT = 5.0


@dataclass
class _Batch:
    """One outbox read, signed: what to publish, which rows it covers, which rows cannot go."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    committed: list[tuple[str, int]] = field(default_factory=list)  # (channel, commit ms) of `sent`


class PushPublisher:
    def __init__(
        self,
        service: ControllerService,
        nc: NatsClient,
        signing_key: Ed25519PrivateKey | SigningKeys,
        *,
        beacon_interval: float = 5.0,
        metrics: PushMetrics = NO_METRICS,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.nc = nc
        self.keys = SigningKeys.of(signing_key)
        self.beacon_interval = beacon_interval
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.unpublishable = 0

    def wake(self) -> None:
        self._wake.set()

    def wake_threadsafe(self) -> None:
        """wake() from a worker thread (the telemetry consumer's)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._outbox_loop(), name="outbox"),
            asyncio.create_task(self._beacon_loop(), name="beacons"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)

    async def _outbox_loop(self) -> None:
        while True:
            await wait_event(self._wake, 1.0)
            self._wake.clear()
            try:
                await self.publish_pending()
            except Exception as exc:  # broker down: the rows stay unpublished and are retried
                self.metrics.publish_failed("broker")
                log.warning("publishing pushes failed: %s", exc)
                await asyncio.sleep(0.5)

    def max_envelope(self) -> int:
        """The broker's payload limit as it announced it (never above what agents accept)."""
        announced = getattr(self.nc, "max_payload", 0) or MAX_ENVELOPE_BYTES
        return min(int(announced), MAX_ENVELOPE_BYTES)

    async def publish_pending(self) -> int:
        total = 0
        while True:
            rows = await asyncio.to_thread(outbox.pending, self.service.db, 1000)
            if not rows:
                return total
            batch = await asyncio.to_thread(self._prepare, rows, self.max_envelope())
            if batch.failed:  # first: a broker error below must not leave these to be retried
                await asyncio.to_thread(outbox.mark_unpublishable, self.service.db, batch.failed)
                self.unpublishable += len(batch.failed)
                self.metrics.publish_failed("unpublishable", len(batch.failed))
            for subject, data in batch.messages:
                await self.nc.publish(subject, data)
            await self.nc.flush(timeout=FLUSH_TIMEOUT)
            self.metrics.published(batch.committed)
            await asyncio.to_thread(self.service.mark_published, batch.sent)
            total += len(batch.sent)
            self.published += len(batch.sent)

    def _prepare(self, rows: list[outbox.OutboxRow], max_envelope: int) -> _Batch:
        """Parse, split and sign (in a worker thread). Rows that cannot travel are set aside."""
        batch = _Batch()
        for row in rows:
            try:
                if row.size > MAX_PUSH_BYTES:  # not even loaded
                    raise PushTooLarge(f"push {row.channel}#{row.seq} is {row.size} bytes, "
                                       f"over the {MAX_PUSH_BYTES} bytes a push may take in parts")
                push = push_pb2.Push.FromString(row.payload)
                envelopes = sign_split(self.keys.active, push, max_envelope)
            except Exception as exc:  # PushTooLarge, or a row that does not parse: never retried
                error = f"not published on NATS, gateways get it by resync: {exc}"
                log.warning("outbox row %d (%s#%d): %s", row.id, row.channel, row.seq, error)
                batch.failed.append((row.id, error))
                continue
            subject = channel_subject(push.channel)
            batch.messages.extend((subject, e.SerializeToString()) for e in envelopes)
            batch.sent.append(row.id)
            batch.committed.append((row.channel, row.created_at_ms))
        return batch

    async def _beacon_loop(self) -> None:
        while True:
            await asyncio.sleep(self.beacon_interval)
            try:
                heads = await asyncio.to_thread(self.service.published_heads)
                beacons = await asyncio.to_thread(self._sign_beacons, heads)
                for subject, data in beacons:
                    await self.nc.publish(subject, data)
            except Exception as exc:
                log.debug("beacon failed: %s", exc)

    async def announce_keys(self, old: Ed25519PrivateKey, keys: common_pb2.SigningKeys) -> bool:
        """A key rotation, signed by the key agents trust now, on the global channel (every gateway
        follows it) and on the connection every later push takes, so it reaches each agent first.
        False when the broker did not take it: agents then learn the set from GetBrokers."""
        try:
            heads = await asyncio.to_thread(self.service.published_heads)
            push = push_pb2.Push(channel=GLOBAL_CHANNEL, seq=heads.get(GLOBAL_CHANNEL, 0), signing_keys=keys)
            await self.nc.publish(channel_subject(GLOBAL_CHANNEL), sign_push(old, push).SerializeToString())
            await self.nc.flush(timeout=FLUSH_TIMEOUT)
        except Exception as exc:
            log.warning("announcing the new signing key on NATS failed (gateways fetch the set from "
                        "GetBrokers): %s", exc)
            return False
        return True

    def _sign_beacons(self, heads: dict[str, int]) -> list[tuple[str, bytes]]:
        active = self.keys.active
        return [
            (channel_subject(channel), sign_push(active, push_pb2.Push(
                channel=channel, seq=seq, beacon=push_pb2.Beacon())).SerializeToString())
            for channel, seq in heads.items()
        ]
