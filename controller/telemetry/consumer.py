"""The controller's telemetry consumer: JetStream stream -> durable pull consumer -> SQL rollups.

Several controller processes can run this side by side on the same durable consumer: JetStream hands
each message to one of them at a time, and if one dies holding messages they are redelivered after
`ack_wait` to whoever is left. Messages are acked only after their transaction committed; the
database's idempotency key (see ingest.py) makes the redelivery of a committed-but-unacked batch
harmless. Malformed batches are counted and terminated (never redelivered); a database that is down
gets the chunk naked and retried with backoff, so nothing is dropped for a transient fault.

The event loop only moves messages: parsing, folding and SQL run in worker threads. Two workers by
default, so that one sums its chunk in Python while the other waits for the database (their
transactions serialize only on the rows they share). Under load chunks grow (see `linger`), and a
gateway's consecutive batches in one chunk update each rollup row once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError

from controller.store.db import Database
from controller.store.revoked import revoked_since
from controller.telemetry.alerts import Thresholds
from controller.telemetry.bounds import BatchRejected, EnrolledAt, EnrollmentTimes, PeriodRefused
from controller.telemetry.consumer_state import CachedThresholds, ConsumerStats, Outcome, chunk_enrollment
from controller.telemetry.ingest import FoldResult, ingest, is_transient
from controller.telemetry.pull import BoundedPull, MessageBuffer, stored_ms
from controller.telemetry.validate import validate_batch
from mssp.common.channels import TELEMETRY_PREFIX
from mssp.common.clock import now_ms
from mssp.v1 import telemetry_pb2

log = logging.getLogger("mssp.controller.telemetry")

STREAM = "TELEMETRY"
DURABLE = "telemetry-ingest"
SUBJECT = f"{TELEMETRY_PREFIX}.>"
MAX_MESSAGE = 1024 * 1024


class TelemetryConsumer:
    def __init__(
        self,
        db: Database,
        nc: NatsClient,
        *,
        thresholds_of: Thresholds | None = None,
        enrolled_at: EnrollmentTimes | EnrolledAt | None = None,
        stream: str = STREAM,
        durable: str = DURABLE,
        fetch_batch: int = 1000,
        max_chunk: int = 8000,
        fetch_timeout: float = 1.0,
        ack_wait: float = 30.0,
        max_ack_pending: int = 20_000,
        duplicate_window: float = 120.0,
        max_age: float = 7 * 86400.0,
        max_bytes: int = 8 * 1024**3,
        max_msgs_per_gateway: int = 240,
        fetch_max_bytes: int = 8 * 1024**2,
        buffer_max_bytes: int = 64 * 1024**2,
        retry_delay: float = 2.0,
        workers: int = 2,
        linger: float = 0.5,
        clock_ms: Callable[[], int] | None = None,
        on_sightings: Callable[[list[tuple[str, str, str, str, str, int, int]]], object] | None = None,
    ) -> None:
        self.db = db
        self.on_sightings = on_sightings  # hits folded from batches: sightings too (the slow path)
        self.nc = nc
        self.thresholds_of = CachedThresholds(thresholds_of) if thresholds_of is not None else None
        self.enrolled_at = enrolled_at  # None: no enrollment bound (tests and benches without a fleet)
        self.stream = stream
        self.durable = durable
        self.fetch_batch = fetch_batch
        self.max_chunk = max_chunk
        self.fetch_timeout = fetch_timeout
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.duplicate_window = duplicate_window
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.max_msgs_per_gateway = max_msgs_per_gateway
        self.fetch_max_bytes = fetch_max_bytes
        self.retry_delay = retry_delay
        self.workers = max(1, workers)
        self.linger = linger
        self._stats_lock = threading.Lock()
        self.clock_ms = clock_ms or now_ms
        self.stats = ConsumerStats()
        self._js: JetStreamContext = nc.jetstream(timeout=10.0)
        self._pull: BoundedPull | None = None
        self._buffer = MessageBuffer(limit=2 * max_chunk, max_bytes=buffer_max_bytes)
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    # ---- setup -----------------------------------------------------------------------------

    def stream_config(self) -> api.StreamConfig:
        """Nothing unconsumed is ever evicted for room: each gateway publishes to one subject (its JWT
        allows no other), a full subject refuses that gateway's next batch (it stays in its spool),
        and a full stream refuses new batches instead of dropping old ones (discard new).

        Interest retention: an ack (or term) removes the batch, so the caps count only batches not
        yet consumed. Under limits retention acked batches stay until max_age and fill every cap.
        (Not work-queue: the server cannot switch an existing stream to or from it.)"""
        return api.StreamConfig(
            name=self.stream,
            subjects=[SUBJECT],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.INTEREST,
            discard=api.DiscardPolicy.NEW,
            discard_new_per_subject=True,
            max_msgs_per_subject=self.max_msgs_per_gateway,
            duplicate_window=self.duplicate_window,
            max_age=self.max_age,
            max_bytes=self.max_bytes,
            max_msg_size=MAX_MESSAGE,
        )

    def consumer_config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
            max_waiting=512,
            filter_subject=SUBJECT,
        )

    async def ensure(self) -> None:
        """Create or update the stream and the durable consumer; safe to race with other controllers.

        A stream an older controller made (limits retention) is switched to interest in place: the
        server then drops what the durable has acked and keeps the rest. The durable is registered
        first, because a switch with no consumer on the stream drops every stored batch."""
        config = self.stream_config()
        try:
            await self._js.add_stream(config)
        except BadRequestError:  # exists with another configuration: bring it to ours
            await self._js.add_consumer(self.stream, self.consumer_config())
            await self._js.update_stream(config)
        await self._js.add_consumer(self.stream, self.consumer_config())

    async def start(self) -> None:
        await self.ensure()
        self._pull = BoundedPull(self.nc, self.stream, self.durable, max_bytes=self.fetch_max_bytes,
                                 largest_message=MAX_MESSAGE)
        await self._pull.start()
        self._stopping = False
        self._tasks = [asyncio.create_task(self._fetch_loop(), name="telemetry-fetch")]
        self._tasks += [asyncio.create_task(self._process_loop(), name=f"telemetry-worker-{i}")
                        for i in range(self.workers)]

    async def stop(self) -> None:
        """Finish the chunk in hand, give back what was fetched but not started (nak), unsubscribe."""
        self._stopping = True
        if not self._tasks:
            return
        fetch, *workers = self._tasks
        fetch.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await fetch
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.ack_wait):
                await self._idle.wait()
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for msg in self._buffer.drain():
            with contextlib.suppress(Exception):
                await msg.nak()
        if self._pull is not None:
            await self._pull.stop()
            self._pull = None

    async def lag(self) -> int:
        """Messages in the stream not yet acked by this durable (pending + in flight)."""
        info = await self._js.consumer_info(self.stream, self.durable)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    # ---- loops -----------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        assert self._pull is not None
        backoff = 0.1
        while not self._stopping:
            try:  # bounded by count and by bytes (see pull.py)
                msgs = await self._pull.fetch(self.fetch_batch, self.fetch_timeout)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker restarting, connection closed: try again shortly
                self.stats.last_error = f"fetch: {type(exc).__name__}: {exc}"
                log.debug("telemetry fetch failed: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if msgs:
                await self._buffer.put(msgs)

    async def _process_loop(self) -> None:
        backoff = self.retry_delay
        while True:
            await self._buffer.wait_nonempty()
            self._busy += 1
            self._idle.clear()
            try:
                # Grow the chunk for up to `linger` (or to max_chunk): a gateway's consecutive batches
                # in one chunk share rollup rows, so under load bigger chunks mean fewer rows written
                # per record. Without load it costs a moment of latency on 30-second telemetry.
                msgs = await self._buffer.take(self.max_chunk, 0.0 if self._stopping else self.linger)
                if not msgs:
                    continue
                try:
                    retry = await self.process(msgs)
                except Exception as exc:  # backstop: nothing restarts a worker that ends, so none may
                    retry = True
                    self.stats.last_error = f"worker: {type(exc).__name__}: {exc}"
                    log.exception("telemetry chunk of %d failed unexpectedly; it will be retried", len(msgs))
                    await self._settle(msgs, [Outcome.RETRY] * len(msgs))
            finally:
                self._busy -= 1
                if not self._busy:
                    self._idle.set()
            if retry:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = self.retry_delay

    async def process(self, msgs: list[Msg]) -> bool:
        """Fold and settle one chunk; True when some messages must be retried later."""
        items = [(m.subject, m.data) for m in msgs]
        keepalive = asyncio.create_task(self._keep_alive(msgs))
        try:
            outcomes = await asyncio.to_thread(self._work, items, [stored_ms(m) for m in msgs])
        finally:
            keepalive.cancel()
        await self._settle(msgs, outcomes)
        return any(o is Outcome.RETRY for o in outcomes)

    async def _keep_alive(self, msgs: list[Msg]) -> None:
        """A big chunk on a slow database may take a while: tell JetStream we are still at it (+WPI)
        so it does not redeliver the chunk to another controller meanwhile."""
        while True:
            await asyncio.sleep(self.ack_wait / 3)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _settle(self, msgs: list[Msg], outcomes: list[Outcome]) -> None:
        for msg, outcome in zip(msgs, outcomes, strict=True):
            try:
                if outcome is Outcome.DONE:
                    await msg.ack()
                elif outcome is Outcome.REJECTED:
                    await msg.term()
                else:
                    await msg.nak(delay=self.retry_delay)
            except Exception as exc:  # a lost ack means a redelivery, which the idempotency key absorbs
                log.debug("could not settle a telemetry message: %s", exc)

    # ---- the worker thread -----------------------------------------------------------------

    def _work(self, items: list[tuple[str, bytes]], stored: list[int] | None = None) -> list[Outcome]:
        now = self.clock_ms()
        outcomes = [Outcome.DONE] * len(items)
        with self._stats_lock:
            self.stats.received += len(items)
            self.stats.chunks += 1
        try:
            enrolled_at = chunk_enrollment(self.enrolled_at, [subject for subject, _ in items])
        except Exception as exc:  # cannot tell who is enrolled: count nothing now, retry later
            self.stats.last_error = f"enrollment: {type(exc).__name__}: {exc}"
            log.warning("telemetry: enrollment times unavailable (%s); %d batches will be retried",
                        exc, len(items))
            with self._stats_lock:
                self.stats.retries += len(items)
            return [Outcome.RETRY] * len(items)
        valid: list[tuple[int, telemetry_pb2.TelemetryBatch]] = []
        for i, (subject, data) in enumerate(items):
            try:
                valid.append((i, validate_batch(subject, data, now, enrolled_at=enrolled_at)))
            except BatchRejected as exc:
                outcomes[i] = Outcome.REJECTED
                self._rejected(subject, str(exc), out_of_bounds=isinstance(exc, PeriodRefused))
        try:
            valid = self._drop_revoked(valid, stored)
        except Exception as exc:  # cannot tell who is revoked: count nothing now, retry later
            self.stats.last_error = f"revoked: {type(exc).__name__}: {exc}"
            return [Outcome.RETRY if o is Outcome.DONE else o for o in outcomes]
        if not valid:
            return outcomes
        try:
            self._count(ingest(self.db, [b for _, b in valid], self.thresholds_of, now_ms=now))
            return outcomes
        except Exception as exc:
            self.stats.last_error = f"fold: {type(exc).__name__}: {exc}"
            if is_transient(exc) or len(valid) == 1:
                return self._failed(outcomes, valid, exc)
            log.warning("telemetry chunk of %d failed (%s); retrying batch by batch", len(valid), exc)
        for i, batch in valid:  # find the one bad batch instead of retrying the chunk forever
            try:
                self._count(ingest(self.db, [batch], self.thresholds_of, now_ms=now))
            except Exception as exc:
                self._failed(outcomes, [(i, batch)], exc)
        return outcomes

    def _drop_revoked(
        self, valid: list[tuple[int, telemetry_pb2.TelemetryBatch]], stored: list[int] | None
    ) -> list[tuple[int, telemetry_pb2.TelemetryBatch]]:
        """Batches the broker stored after their gateway's revocation are acked and not counted (the
        broker may not have cut the gateway off yet); those stored before it still count."""
        if not valid or stored is None:
            return valid
        revoked = revoked_since(self.db, {b.gateway_id for _, b in valid})
        kept = [(i, b) for i, b in valid if stored[i] < revoked.get(b.gateway_id, 2**63)]
        with self._stats_lock:
            self.stats.revoked += len(valid) - len(kept)
        return kept

    def _failed(
        self, outcomes: list[Outcome], batches: list[tuple[int, telemetry_pb2.TelemetryBatch]], exc: Exception
    ) -> list[Outcome]:
        if is_transient(exc):
            log.warning("telemetry: database unavailable (%s); %d batches will be retried", exc, len(batches))
            for i, _ in batches:
                outcomes[i] = Outcome.RETRY
            with self._stats_lock:
                self.stats.retries += len(batches)
            return outcomes
        for i, batch in batches:  # valid protobuf the database will never accept: poison
            outcomes[i] = Outcome.REJECTED
            self._rejected(f"{batch.tenant_id}/{batch.gateway_id}#{batch.batch_seq}",
                           f"database refused it: {type(exc).__name__}")
        log.error("telemetry batch refused by the database: %s", exc)
        return outcomes

    def _count(self, result: FoldResult) -> None:
        with self._stats_lock:
            self.stats.batches += result.new
            self.stats.duplicates += result.duplicates
            self.stats.records += result.records
            self.stats.alerts += result.alerts
        if result.sightings and self.on_sightings is not None:
            try:  # the batch is committed: a sighting failure must not make it count twice
                self.on_sightings(result.sightings)
            except Exception as exc:
                log.warning("telemetry: %d sightings not recorded: %s", len(result.sightings), exc)

    def _rejected(self, where: str, reason: str, *, out_of_bounds: bool = False) -> None:
        with self._stats_lock:
            self.stats.rejected += 1
            self.stats.out_of_bounds += out_of_bounds
            self.stats.last_rejection = f"{where}: {reason}"
        if self.stats.rejected <= 20 or self.stats.rejected % 1000 == 0:
            log.warning("telemetry batch rejected (%d so far): %s: %s",
                        self.stats.rejected, where[:200], reason)
