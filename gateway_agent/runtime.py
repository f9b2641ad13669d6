"""The running agent: NATS pushes and gRPC resyncs in, enforcement and status reports out.

Every push, from NATS or from a resync stream, goes through one queue and one worker, so state
moves forward strictly in order. Signatures are checked before anything is parsed; the state is
persisted only after the backend applied it, so what is on disk is what is in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

import grpc
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from gateway_agent import __version__, brokers, nats_connect, renewal
from gateway_agent.backends.base import ApplyError, EnforcementBackend
from gateway_agent.clock import AgentClock
from gateway_agent.facts import AgentFacts, FactsMixin
from gateway_agent.following import ChannelFollower, Following
from gateway_agent.identity import AgentIdentity
from gateway_agent.own_policy import policy_backend
from gateway_agent.reconnect import ReconnectCheck
from gateway_agent.recovery import Recovery, reload_applied, restore
from gateway_agent.refusals import report_fields
from gateway_agent.renewal import Renewer
from gateway_agent.sightings import HitWatcher
from gateway_agent.state import DesiredState, Gap, Invalid, Stale, StateChange
from gateway_agent.statefile import StateFile, StateFileError
from gateway_agent.status_file import PushStats, StatusWrites, agent_status, write_status_file
from gateway_agent.telemetry.publisher import TelemetryPublisher, create_publisher
from mssp.common.aio import cancel_and_wait
from mssp.common.envelope import PushExpired, PushRejected, UnknownSigner, open_envelope, open_signed
from mssp.v1 import gateway_pb2, gateway_pb2_grpc, push_pb2

log = logging.getLogger("mssp.agent")

RPC_TIMEOUT = 10.0
SYNC_TIMEOUT = 120.0
MAX_BACKOFF = 30.0


_RESYNC = object()


class GatewayAgent(FactsMixin):
    def __init__(
        self,
        identity: AgentIdentity,
        backend: EnforcementBackend,
        *,
        heartbeat_interval: float = 30.0,
        report_jitter: float = 1.0,
        telemetry_interval: float | None = 30.0,
        on_applied: Callable[[StateChange, float], None] | None = None,
        clock: AgentClock | None = None,
    ) -> None:
        self.clock = clock or AgentClock()  # the controller's time when the router's is far off
        self.identity = identity
        self.backend = policy_backend(backend, identity.gateway_id)  # exempt.py, own_policy.py
        self.heartbeat_interval = heartbeat_interval
        self.report_jitter = report_jitter
        self.on_applied = on_applied
        self.state = DesiredState(identity.tenant_channel)
        self.statefile = StateFile(identity.state_dir / "state")
        self.recovery = Recovery()  # holds enforcement back when the state file was unusable
        self.push_stats = PushStats()
        self.last_error = self.last_rejection = ""
        self.facts = AgentFacts(identity.label)  # nats_connected, controller_reachable, revoked: facts.py
        self.synced = asyncio.Event()  # set after the first successful resync
        self.keys = identity.keyring()  # the push-signing keys it trusts (rotations: following.py)
        self.renewer = Renewer(identity, lambda: self._stub, self.reopen_channel, self.clock)
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._resync_queued = False
        self.resyncing = False  # a Sync stream is being applied
        self._resync_backoff = 0.5
        self.reconnect_check = ReconnectCheck(self.request_resync)
        self._report_pending = False
        self.status_writes = StatusWrites(self.write_status)
        self._nc: NatsClient | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: gateway_pb2_grpc.GatewayServiceStub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.away = brokers.AwayLog()  # controller/broker away: one warning a minute at most
        self.following = ChannelFollower(self)
        self.brokers = brokers.BrokerFollower(
            identity, self.away, lambda: self._channel, lambda: self._stub, lambda: self._nc,
            lambda: self.nats_connected,
            on_answer=lambda r: self._queue.put_nowait(Following.of(r)),
        )
        self.hits = HitWatcher(backend, lambda: self._stub, identity.label)  # sightings, reported at once
        self.telemetry: TelemetryPublisher | None = None
        if telemetry_interval is not None:
            self.telemetry = create_publisher(
                identity.state_dir, tenant_id=identity.tenant_id, gateway_id=identity.gateway_id,
                connection=lambda: self._nc if self.nats_connected else None,
                source=backend, dns_log=backend.dns_query_log(),
                applied=lambda: self.state.versions(), apply_errors=lambda: self.push_stats.apply_errors,
                interval=telemetry_interval, clock=self.clock.now_ms,
            )

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.restore()
        await asyncio.to_thread(renewal.recover, self.identity)  # a renewal a crash interrupted
        self._channel, self._stub = await brokers.open_channel(self.identity)
        self.brokers.stopped = self.closing = False  # a run after close() follows the broker again
        self._tasks = [
            asyncio.create_task(self._worker(), name="push-worker"),
            asyncio.create_task(self._nats_loop(), name="nats"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self.hits.run(), name="hits"),
            asyncio.create_task(self.renewer.run(), name="renewal"),
        ]
        if self.telemetry is not None:
            self.telemetry.start()
        self.request_resync()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        self.closing = True  # a connection the broker ends from now on is not replaced (_on_closed)
        if self.telemetry is not None:
            await self.telemetry.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:  # re-cancelled until done: nats-py's connect can swallow one (mssp.common.aio)
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)
        self.reconnect_check.cancel()
        await self.brokers.stop()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        if self._channel is not None:
            await self._channel.close()
        await self.write_status()

    async def restore(self) -> None:
        """Fail-static: re-enforce the last applied state (recovery.py) before talking to anyone."""
        await restore(self)

    def _channel_credentials(self) -> grpc.ChannelCredentials:
        return brokers.channel_credentials(self.identity)

    async def reopen_channel(self) -> None:
        """After a renewal: new calls present the new certificate; calls under way finish on the old."""
        old = self._channel
        self._channel, self._stub = await brokers.open_channel(self.identity)
        if old is not None:
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(asyncio.create_task(old.close(grace=SYNC_TIMEOUT), name="old-channel"))

    # ---- NATS ------------------------------------------------------------------------------

    async def _nats_loop(self) -> None:
        attempt = 0
        while self._nc is None:
            try:
                self._nc = await nats_connect.connect_agent(
                    self.identity, reconnected_cb=self._on_reconnected, disconnected_cb=self._on_disconnected,
                    error_cb=self._on_nats_error, closed_cb=self._on_closed,
                )
            except Exception as exc:
                self.away.warning("%s: NATS unreachable (%s); retrying", self.identity.label, exc,
                                  kind=brokers.nats_error_kind(exc))
                self.brokers.broker_away()  # the broker may have moved: ask the controller
                await asyncio.sleep(brokers.backoff(attempt))
                attempt += 1
        await self.following.subscribe_all()
        await self._nc.flush()
        self.nats_connected = True
        self.request_resync()  # anything published before we subscribed
        if self.telemetry is not None:
            self.telemetry.wake(spread=True)  # replay what was spooled while the broker was away

    async def _on_message(self, msg: Msg) -> None:
        self._queue.put_nowait(msg.data)

    async def _on_reconnected(self) -> None:
        self.nats_connected = True  # then the next beacons show whether we missed a push
        self.reconnect_check.start(self.state.beaconed_channels())  # gateway_agent/reconnect.py
        if self.telemetry is not None:
            self.telemetry.wake(spread=True)

    async def _on_disconnected(self) -> None:
        self.nats_connected = False
        self.brokers.broker_away()

    async def _on_closed(self) -> None:
        """nats-py gives up on a connection the broker ended with an error (our JWT was revoked: a
        renewal or an alliance change replaced it): connect anew, with the credentials saved since."""
        if not self.closing:
            self.nats_connected, self._nc = False, None
            self._tasks.append(asyncio.create_task(self._nats_loop(), name="nats"))

    async def _on_nats_error(self, exc: Exception) -> None:
        self.away.warning("%s: NATS error: %s", self.identity.label, exc, kind=brokers.nats_error_kind(exc))

    # ---- applying pushes -------------------------------------------------------------------

    def request_resync(self) -> None:
        if not self._resync_queued:
            self._resync_queued = True
            self._queue.put_nowait(_RESYNC)

    async def _worker(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item is _RESYNC:
                    self._resync_queued = False
                    self.reconnect_check.cancel()  # a resync brings every channel up to date
                    self.resyncing = True
                    try:
                        await self._resync()
                    finally:
                        self.resyncing = False
                elif isinstance(item, bytes):
                    await self.handle_envelope_bytes(item)
                elif isinstance(item, Following):
                    await self.following.apply(item)
            except Exception:  # the worker must survive anything one message does
                log.exception("%s: failed to process an update", self.identity.label)

    async def handle_envelope_bytes(self, data: bytes) -> None:
        try:
            push = open_envelope(self.keys, data, self.state.channel_names, now=self.clock.now_ms())
        except PushRejected as exc:
            self._rejected(exc)
            return
        if push.HasField("signing_keys"):  # a key rotation: the set itself comes from GetBrokers
            self.brokers.refresh_soon()
            return
        await self._apply_push(push)

    def _rejected(self, reason: str | PushRejected, prefix: str = "") -> None:
        self.push_stats.rejected += 1
        self.last_rejection = prefix + str(reason)
        log.warning("%s: push rejected: %s", self.identity.label, self.last_rejection)
        if isinstance(reason, UnknownSigner):  # a rotation we missed: GetBrokers lists the keys
            self.brokers.refresh_soon()
        elif isinstance(reason, PushExpired):  # or is our clock off? the report's answer says (clock.py)
            self._schedule_report()

    async def _apply_push(self, push: push_pb2.Push) -> bool:
        """False when the push could not be applied (the caller may stop a resync stream)."""
        try:
            change = self.state.apply(push)
        except Stale:
            self.push_stats.stale += 1
            return True
        except Gap as exc:
            self.push_stats.gaps += 1
            log.info("%s: %s; resyncing", self.identity.label, exc)
            self.request_resync()
            return False
        except Invalid as exc:
            self._rejected(str(exc))
            return False
        self.reconnect_check.confirm(push.channel)  # in order: nothing missed before it
        if change is None or change.empty:
            return True
        if self.recovery.holds(self.state, change, push):
            return True  # nothing reached the kernel: not applied; last_error keeps the reason (recovery.py)
        try:
            await asyncio.to_thread(self._enforce, change, push)
        except ApplyError as exc:
            self._apply_failed(exc)
            self.state = await asyncio.to_thread(self._reload_applied)
            self._schedule_report()
            return False
        self.applied(change)
        self.last_error = ""
        if self.on_applied is not None:
            self.on_applied(change, time.monotonic())
        self._schedule_report()
        return True

    async def enforce(self, change: StateChange) -> None:
        """A full change made here, not by a push (a channel dropped): applied and saved whole."""
        try:
            await asyncio.to_thread(self._enforce, change, push_pb2.Push())
        except ApplyError as exc:
            self._apply_failed(exc)
            self.state = await asyncio.to_thread(self._reload_applied)
        self._schedule_report()

    def _enforce(self, change: StateChange, push: push_pb2.Push) -> None:
        try:
            if change.full:
                self.backend.apply_full(self.state)
                self.statefile.save_full(self.state)
            else:
                self.backend.apply_delta(self.state, change)
                self.statefile.append(self.state, change.push or push)  # whole, not its last part
        except StateFileError as exc:  # enforced but not persisted; the next change writes it whole
            log.error("%s: %s", self.identity.label, exc)

    def _reload_applied(self) -> DesiredState:
        return reload_applied(self)

    def _apply_failed(self, exc: Exception) -> None:
        self.push_stats.apply_errors += 1
        self.last_error = f"apply failed: {exc}"
        log.error("%s: %s", self.identity.label, self.last_error)

    # ---- controller (gRPC) -----------------------------------------------------------------

    async def _resync(self) -> None:
        assert self._stub is not None
        request = gateway_pb2.SyncRequest(applied=self.state.versions(), force_snapshot=self.recovery.holding,
                                          alliance=self.state.follows_alliance)
        try:
            async for envelope in self._stub.Sync(request, timeout=SYNC_TIMEOUT):
                try:
                    push = open_signed(self.keys, envelope, self.state.channel_names, now=self.clock.now_ms())
                except PushRejected as exc:
                    self._rejected(exc, "resync: ")
                    raise
                if not await self._apply_push(push):
                    break
        except (grpc.aio.AioRpcError, PushRejected) as exc:
            self.controller_lost(exc)
            detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            delay = self._resync_backoff * random.uniform(0.5, 1.0)
            self.away.warning("%s: resync failed (%s); retrying in %.1fs", self.identity.label, detail, delay)
            asyncio.get_running_loop().call_later(delay, self.request_resync)
            self._resync_backoff = min(self._resync_backoff * 2, MAX_BACKOFF)
            return
        self.controller_reachable = True
        self._resync_backoff = 0.5
        self.resynced(self.state.versions_text())
        self.synced.set()
        self.brokers.refresh_soon()  # where the broker is now (it may have moved or grown)
        self._schedule_report()

    def _schedule_report(self) -> None:
        if not self._report_pending:
            self._report_pending = True
            # Spread the reports: a global push makes every gateway report at once (thundering herd).
            delay = 0.05 + random.uniform(0.0, self.report_jitter)
            asyncio.get_running_loop().call_later(delay, self._spawn_report)

    def _spawn_report(self) -> None:
        self._report_pending = False
        task = asyncio.ensure_future(self.report())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def report(self) -> gateway_pb2.StatusAck | None:
        assert self._stub is not None
        report = gateway_pb2.StatusReport(
            applied=self.state.versions(),
            agent_version=__version__,
            backend=self.backend.name,
            last_error=self.last_error or self.renewer.last_error,
            apply_errors=self.push_stats.apply_errors, **report_fields(self.backend.refusals()),
            **self.backend.budget_report(), alliance_aware=True, alliance=self.state.follows_alliance,
            rotation_aware=True, clock_offset_ms=self.clock.offset_ms, ca_rollover_aware=True,
        )
        try:
            sent = self.clock.local()
            ack = await self._stub.ReportStatus(report, timeout=RPC_TIMEOUT)
            self.clock.observe(ack.controller_time_ms, sent, self.clock.local())
        except grpc.aio.AioRpcError as exc:
            self.controller_lost(exc)
            log.debug("%s: status report failed: %s", self.identity.label, exc.details())
            return None
        finally:
            self.status_writes.schedule()
        self.controller_reachable = True
        return ack

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            ack = await self.report()
            if ack is not None and ack.desired != self.state.versions():
                self.request_resync()

    # ---- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return agent_status(self)

    async def write_status(self) -> None:
        """The status is taken on the loop (it reads live state); only the file write is threaded."""
        await asyncio.to_thread(write_status_file, self.identity.state_dir, self.status())
