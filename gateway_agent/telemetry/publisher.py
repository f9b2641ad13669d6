"""The agent's telemetry loop: every interval make a batch, spool it, then drain the spool to JetStream.

Every batch is spooled before it is published (the spool is the outbox), and the spool is drained
oldest first, one publish at a time, each waiting for its PubAck; a batch leaves the spool only once
the broker has stored it. So batches reach the stream in seq order, survive outages and restarts,
and a publish whose ack was lost is simply sent again: its Nats-Msg-Id ("<gateway_id>:<seq>:<nonce>",
the nonce random per batch and kept in the spool) makes the broker drop the copy, and the
controller's (gateway_id, batch_seq) key drops any later one. The broker dedupes per stream, across
every gateway's subjects: without the nonce, a gateway that knows another's id and next seq could
publish that id first and have the real batch dropped as a "duplicate".
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client as NatsClient

from gateway_agent.counters import CounterSource
from gateway_agent.telemetry.collector import TelemetryCollector
from gateway_agent.telemetry.spool import DEFAULT_MAX_BATCHES, DEFAULT_MAX_BYTES, TelemetrySpool
from mssp.common.aio import cancel_and_wait, wait_event
from mssp.common.channels import telemetry_subject_prefix
from mssp.common.telemetry_bounds import MAX_PERIOD_MS
from mssp.v1 import common_pb2

log = logging.getLogger("mssp.agent.telemetry")

DEFAULT_INTERVAL = 30.0
DEFAULT_ACK_TIMEOUT = 5.0
REPLAY_SPREAD = 10.0  # a fleet back from an outage replays its spools over this long (at most a third
# of the interval), not into a restarted controller in the same second
MSG_ID_HEADER = "Nats-Msg-Id"


def batch_subject(tenant_id: str, gateway_id: str) -> str:
    return f"{telemetry_subject_prefix(tenant_id, gateway_id)}.batch"


def msg_id(gateway_id: str, seq: int, nonce: str) -> str:
    """The batch's Nats-Msg-Id: the same for every replay of one spooled batch, unguessable by others."""
    return f"{gateway_id}:{seq}:{nonce}"


@dataclass
class PublisherStats:
    batches_made: int = 0
    published: int = 0
    duplicates: int = 0  # the broker already had it (an ack we missed earlier)
    failures: int = 0
    last_error: str = ""


class TelemetryPublisher:
    def __init__(
        self,
        collector: TelemetryCollector,
        spool: TelemetrySpool,
        connection: Callable[[], NatsClient | None],
        *,
        interval: float = DEFAULT_INTERVAL,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
    ) -> None:
        if interval <= 0:
            raise ValueError("telemetry interval must be positive")
        if interval * 1000 > MAX_PERIOD_MS:
            log.warning("telemetry interval %.0fs is longer than a batch may cover (%ds): each batch "
                        "reports only its last %ds of online time", interval, MAX_PERIOD_MS // 1000,
                        MAX_PERIOD_MS // 1000)
        self.collector = collector
        self.spool = spool
        self.connection = connection
        self.interval = interval
        self.ack_timeout = ack_timeout
        self.subject = batch_subject(collector.tenant_id, collector.gateway_id)
        self.stats = PublisherStats()
        self._wake = asyncio.Event()
        self._replay: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one tick or drain at a time: the spool is not shared

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="telemetry")

    async def stop(self) -> None:
        if self._replay is not None:
            self._replay.cancel()
        await cancel_and_wait(self._task)
        self._task = None

    def wake(self, *, spread: bool = False) -> None:
        """Drain now; with `spread` (NATS is back after an outage) at a random moment within
        REPLAY_SPREAD, so the whole fleet's spooled batches do not all land at once."""
        if self._replay is not None:
            self._replay.cancel()
            self._replay = None
        window = min(REPLAY_SPREAD, self.interval / 3)
        if not spread or window <= 0:
            self._wake.set()
            return
        self._replay = asyncio.get_running_loop().call_later(random.uniform(0, window), self._wake.set)

    async def run(self) -> None:
        # A random phase: gateways started together (a fleet after an outage, a bench) must not
        # all publish in the same instant, interval after interval.
        next_tick = time.monotonic() + self.interval * random.uniform(0.5, 1.5)
        while True:
            await wait_event(self._wake, next_tick - time.monotonic())
            self._wake.clear()
            try:
                if time.monotonic() >= next_tick:
                    next_tick = max(next_tick + self.interval, time.monotonic() + self.interval / 10)
                    await self.tick()
                else:
                    await self.drain()
            except Exception:  # the loop must outlive a full disk or a broken counter source
                log.exception("telemetry cycle failed")

    # ---- work ------------------------------------------------------------------------------

    async def tick(self) -> int:
        """Make one batch, then drain; returns the batch's seq."""
        async with self._lock:
            seq = await asyncio.to_thread(self._make_batch)
        await self.drain()
        return seq

    def _make_batch(self) -> int:
        pending = self.collector.collect(spool_drops=self.spool.drops, spool_depth=len(self.spool))
        seq = pending.batch.batch_seq
        self.spool.append(seq, pending.batch.SerializeToString())
        self.collector.commit(pending)  # only now is "seq made" persisted (see collector docstring)
        self.stats.batches_made += 1
        return seq

    async def drain(self) -> int:
        """Publish spooled batches oldest first until the spool is empty or a publish fails."""
        async with self._lock:
            nc = self.connection()
            if nc is None or not nc.is_connected:
                return 0
            js = nc.jetstream(timeout=self.ack_timeout)
            sent = 0
            for seq in self.spool.seqs():
                entry = await asyncio.to_thread(self.spool.read_entry, seq)
                if entry is None:
                    continue
                headers = {MSG_ID_HEADER: msg_id(self.collector.gateway_id, seq, entry.nonce)}
                try:
                    ack = await js.publish(self.subject, entry.payload, headers=headers)
                except Exception as exc:  # timeout, no stream, disconnected: keep it spooled
                    self.stats.failures += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.info("telemetry publish of batch %d failed (%s); %d batches spooled",
                             seq, self.stats.last_error, len(self.spool))
                    break
                await asyncio.to_thread(self.spool.remove, seq)
                sent += 1
                if ack.duplicate:
                    self.stats.duplicates += 1
                else:
                    self.stats.published += 1
            return sent


def create_publisher(
    state_dir: Path,
    *,
    tenant_id: str,
    gateway_id: str,
    connection: Callable[[], NatsClient | None],
    source: CounterSource | None = None,
    dns_log: Path | None = None,
    applied: Callable[[], common_pb2.Versions] | None = None,
    apply_errors: Callable[[], int] | None = None,
    interval: float = DEFAULT_INTERVAL,
    spool_max_batches: int = DEFAULT_MAX_BATCHES,
    spool_max_bytes: int = DEFAULT_MAX_BYTES,
    clock: Callable[[], int] | None = None,
) -> TelemetryPublisher:
    """The agent's telemetry, laid out in its state dir: telemetry/collector.json (seq, counter
    baseline, query-log position) and telemetry/spool/ (the outbox)."""
    directory = Path(state_dir) / "telemetry"
    collector = TelemetryCollector(
        directory, tenant_id=tenant_id, gateway_id=gateway_id, source=source, dns_log=dns_log,
        applied=applied, apply_errors=apply_errors, clock=clock,
    )
    spool = TelemetrySpool(directory / "spool", max_batches=spool_max_batches, max_bytes=spool_max_bytes)
    return TelemetryPublisher(collector, spool, connection, interval=interval)
