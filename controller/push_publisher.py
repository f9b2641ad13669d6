"""Outbox -> NATS. Changes are committed with their push in one transaction (the outbox); this loop
signs and publishes them in order after the commit and marks them sent only once the broker has
them. Beacons announce each channel's head so that an idle agent that missed a push notices."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient

from controller.service import ControllerService
from gateway_agent.protocol import channel_subject, sign_push
from mssp.v1 import push_pb2

log = logging.getLogger("mssp.controller.push")

FLUSH_TIMEOUT = 5.0


class PushPublisher:
    def __init__(
        self,
        service: ControllerService,
        nc: NatsClient,
        signing_key: Ed25519PrivateKey,
        *,
        beacon_interval: float = 5.0,
        expiry_interval: float = 10.0,
    ) -> None:
        self.service = service
        self.nc = nc
        self.signing_key = signing_key
        self.beacon_interval = beacon_interval
        self.expiry_interval = expiry_interval
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._outbox_loop(), name="outbox"),
            asyncio.create_task(self._beacon_loop(), name="beacons"),
            asyncio.create_task(self._expiry_loop(), name="ioc-expiry"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _outbox_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            try:
                await self.publish_pending()
            except Exception as exc:  # broker down: the rows stay unpublished and are retried
                log.warning("publishing pushes failed: %s", exc)
                await asyncio.sleep(0.5)

    async def publish_pending(self) -> int:
        total = 0
        while True:
            rows = await asyncio.to_thread(self.service.unpublished_outbox, 1000)
            if not rows:
                return total
            for _, push in rows:
                envelope = sign_push(self.signing_key, push)
                await self.nc.publish(channel_subject(push.channel), envelope.SerializeToString())
            await self.nc.flush(timeout=FLUSH_TIMEOUT)
            await asyncio.to_thread(self.service.mark_published, [row_id for row_id, _ in rows])
            total += len(rows)
            self.published += len(rows)

    async def _beacon_loop(self) -> None:
        while True:
            await asyncio.sleep(self.beacon_interval)
            try:
                heads = await asyncio.to_thread(self.service.channel_heads)
                for channel, seq in heads.items():
                    push = push_pb2.Push(channel=channel, seq=seq, beacon=push_pb2.Beacon())
                    await self.nc.publish(channel_subject(channel), sign_push(self.signing_key, push)
                                          .SerializeToString())
            except Exception as exc:
                log.debug("beacon failed: %s", exc)

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.expiry_interval)
            try:
                if await asyncio.to_thread(self.service.expire_iocs):
                    self.wake()
            except Exception:
                log.exception("IOC expiry sweep failed")
