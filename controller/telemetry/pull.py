"""Byte-bounded pulls from a durable JetStream consumer, and the buffer between fetching and folding.

nats-py 2.16's `PullSubscription.fetch` bounds a pull by message count only: 1,000 messages of up to
1 MiB each is up to 1 GiB in one fetch. JetStream itself takes `max_bytes` in the pull request, so the
fetcher here speaks the pull protocol directly ($JS.API.CONSUMER.MSG.NEXT with a reply inbox) and
bounds every request by both. The server ends a request with a status message: 404 (nothing there,
no_wait), 408 (expired), 409 (max_bytes reached, or a message larger than max_bytes, which is why
max_bytes is never set below the largest message the stream accepts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mssp.common.clock import now_ms

# Room for the subject, reply subject and headers JetStream counts against max_bytes with the data.
MESSAGE_OVERHEAD = 4096


def stored_ms(msg: Msg) -> int:
    """When the broker stored a JetStream message (its clock, not the publisher's); unknown: now."""
    try:
        return int(msg.metadata.timestamp.timestamp() * 1000)
    except Exception:
        return now_ms()


def _status(msg: Msg) -> str | None:
    if msg.data or not msg.headers:
        return None
    return msg.headers.get("Status")


class BoundedPull:
    """Pull requests on one durable with a message and a byte bound; one fetch at a time."""

    def __init__(
        self, nc: NatsClient, stream: str, durable: str, *, max_bytes: int, largest_message: int,
        api_prefix: str = "$JS.API",
    ) -> None:
        self.nc = nc
        self.subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        # A message larger than max_bytes would never be delivered (the server answers 409 forever).
        self.max_bytes = max(max_bytes, largest_message + MESSAGE_OVERHEAD)
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        # Up to two requests may be open (a lingering one and the next); the local queue holds both.
        self._sub = await self.nc.subscribe(
            self._inbox, pending_msgs_limit=1_000_000, pending_bytes_limit=4 * self.max_bytes
        )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def fetch(self, batch: int, wait: float) -> list[Msg]:
        """Up to `batch` messages and about `max_bytes` bytes; [] when none came within `wait` s."""
        if self._sub is None:
            raise RuntimeError("BoundedPull.start() was not called")
        if batch < 1 or wait <= 0:
            raise ValueError("batch and wait must be positive")
        msgs, _ = self._queued(batch)  # late deliveries for an earlier (lingering) request
        if msgs:
            return msgs
        deadline = time.monotonic() + wait
        await self._request(batch, no_wait=True)
        msgs = await self._collect(batch, deadline, stop_after_first=False)
        if msgs:
            return msgs
        # Nothing waiting: linger until something arrives or the request expires.
        remaining = deadline - time.monotonic()
        if remaining <= 0.01:
            return []
        await self._request(batch, expires=remaining)
        return await self._collect(batch, deadline + 0.5, stop_after_first=True)

    async def _request(self, batch: int, *, no_wait: bool = False, expires: float = 0.0) -> None:
        req: dict[str, object] = {"batch": batch, "max_bytes": self.max_bytes}
        if no_wait:
            req["no_wait"] = True
        else:
            req["expires"] = int(expires * 1e9)
        await self.nc.publish(self.subject, json.dumps(req).encode(), reply=self._inbox)

    def _queued(self, most: int) -> tuple[list[Msg], bool]:
        """Messages already received (no waiting), and whether a request-ending status was among
        them. nats-py keeps them in the subscription's queue and has no public non-blocking get."""
        assert self._sub is not None
        out: list[Msg] = []
        ended = False
        queue = self._sub._pending_queue
        while len(out) < most and not queue.empty():
            msg = queue.get_nowait()
            self._sub._pending_size -= len(msg.data)
            queue.task_done()
            status = _status(msg)
            if status is None:
                out.append(msg)
            elif status != "100":
                ended = True
        return out, ended

    async def _collect(self, batch: int, deadline: float, *, stop_after_first: bool) -> list[Msg]:
        assert self._sub is not None
        out: list[Msg] = []
        while len(out) < batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                msg = await self._sub.next_msg(timeout=remaining)
            except TimeoutError:
                break
            status = _status(msg)
            if status == "100":  # idle heartbeat
                continue
            if status is not None:  # this request is over
                break
            more, ended = self._queued(batch - len(out) - 1)
            out += [msg, *more]
            if ended or stop_after_first:
                break
        return out


class MessageBuffer:
    """Fetched messages waiting for a worker, bounded by count and by bytes (a fetch returns anything
    from one message to a full batch, and a batch of big messages must not blow the memory)."""

    def __init__(self, limit: int, max_bytes: int) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        self._msgs: deque[Msg] = deque()
        self._changed = asyncio.Condition()

    def _room(self) -> bool:
        return len(self._msgs) < self.limit and self.bytes < self.max_bytes

    async def put(self, msgs: list[Msg]) -> None:
        async with self._changed:
            await self._changed.wait_for(self._room)
            self._msgs.extend(msgs)
            self.bytes += sum(len(m.data) for m in msgs)
            self._changed.notify_all()

    async def wait_nonempty(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._msgs))

    async def take(self, most: int, linger: float) -> list[Msg]:
        """Up to `most` messages, waiting up to `linger` seconds for the chunk to fill."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    await self._changed.wait_for(lambda: len(self._msgs) >= most)
            out = [self._msgs.popleft() for _ in range(min(most, len(self._msgs)))]
            self.bytes -= sum(len(m.data) for m in out)
            self._changed.notify_all()
            return out

    def drain(self) -> list[Msg]:
        out = list(self._msgs)
        self._msgs.clear()
        self.bytes = 0
        return out
