"""Sightings: the first hit of an indicator is reported at once, not with the next telemetry batch.

Every POLL_INTERVAL the agent reads the kernel's small per-(host, indicator) hit sets (the backend's
ioc_hits: two `nft list set` of at most host_set_size elements, a few milliseconds) and sends what
is new to the controller over the gateway API (ReportSightings, mTLS). A pair already reported is
sent again only after REPORT_AGAIN and only when it kept hitting, so one infected laptop cannot
flood the controller; what could not be sent waits (at most MAX_PENDING) for the next poll. The
telemetry batches still carry every hit: this is the fast path, not the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from gateway_agent.backends.base import EnforcementBackend
from gateway_agent.beacons.conntrack import follow, never_flagged
from gateway_agent.beacons.detector import BeaconDetector
from mssp.common.clock import now_ms
from mssp.v1 import gateway_pb2, gateway_pb2_grpc

log = logging.getLogger("mssp.agent")

POLL_INTERVAL = 0.5
REPORT_AGAIN = 300.0
MAX_PER_CALL = 100
MAX_PENDING = 1000
MAX_KNOWN = 50_000  # pairs remembered; the oldest are forgotten first
SCORE_EVERY = 2.0  # seconds between beacon scorings
RPC_TIMEOUT = 5.0


@dataclass
class _Known:
    packets: int
    first_ms: int
    reported_at: float  # monotonic


class HitWatcher:
    def __init__(self, backend: EnforcementBackend,
                 stub: Callable[[], gateway_pb2_grpc.GatewayServiceStub | None], label: str,
                 interval: float = POLL_INTERVAL) -> None:
        self.backend = backend
        self.stub = stub
        self.label = label
        self.interval = interval
        self.known: dict[tuple[str, str], _Known] = {}
        self.pending: list[gateway_pb2.Sighting] = []
        self.reported = 0
        self.beacons = BeaconDetector()
        self.beacon_reported: dict[tuple[str, str, int], float] = {}
        self.scored_at = float("-inf")
        self.on_reported: Callable[[list[gateway_pb2.Sighting], float], None] | None = None  # benches

    async def run(self) -> None:
        flows = self.backend.flow_events()
        reader = None
        if flows is not None:  # beacon detection: conntrack's events in the router's namespace
            argv, never = flows
            reader = asyncio.ensure_future(follow(argv, self.beacons, never_flagged(never)))
        try:
            while True:
                await self.poll()
                await asyncio.sleep(self.interval)
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def poll(self) -> None:
        try:
            read = self.backend.ioc_hits
            hits = await asyncio.to_thread(read) if self.backend.hits_block else read()
        except Exception as exc:  # no table yet, nft busy: the next poll tries again
            log.debug("%s: reading IOC hits failed: %s", self.label, exc)
            hits = {}
        self.pending.extend(self.new_sightings(hits, time.monotonic()))
        self.pending.extend(self.new_beacons(time.monotonic()))
        del self.pending[:-MAX_PENDING]
        if self.pending:
            await self.flush()

    def new_sightings(self, hits: dict[tuple[str, str], int], now: float) -> list[gateway_pb2.Sighting]:
        out: list[gateway_pb2.Sighting] = []
        wall = now_ms()
        for (indicator, host), packets in hits.items():
            known = self.known.get((indicator, host))
            if known is None:
                self.known[(indicator, host)] = known = _Known(packets, wall, now)
            elif packets > known.packets and now - known.reported_at >= REPORT_AGAIN:
                known.packets, known.reported_at = packets, now
            else:
                known.packets = max(known.packets, packets)  # a full apply restarts the kernel's count
                continue
            out.append(gateway_pb2.Sighting(indicator=indicator, host=host, via="firewall", count=packets,
                                            first_seen_ms=known.first_ms, last_seen_ms=wall))
        while len(self.known) > MAX_KNOWN:
            self.known.pop(next(iter(self.known)))
        return out

    def new_beacons(self, now: float) -> list[gateway_pb2.Sighting]:
        """Suspected C2 the detector scores above its threshold (every SCORE_EVERY: a beacon is slow,
        and scoring a full table costs tens of milliseconds), each pair once per REPORT_AGAIN."""
        out: list[gateway_pb2.Sighting] = []
        if now - self.scored_at < SCORE_EVERY:
            return out
        self.scored_at = now
        for s in self.beacons.suspects():
            last = self.beacon_reported.get((s.destination, s.host, s.port))
            if last is not None and now - last < REPORT_AGAIN:
                continue
            self.beacon_reported[(s.destination, s.host, s.port)] = now
            out.append(gateway_pb2.Sighting(
                indicator=s.destination, host=s.host, via="beacon", count=s.score.intervals + 1,
                first_seen_ms=now_ms(), last_seen_ms=now_ms(), score=s.score.score, port=s.port,
                median_interval_s=s.score.median_interval_s, jitter_s=s.score.jitter_s,
                median_bytes=s.score.median_bytes))
        while len(self.beacon_reported) > MAX_KNOWN:
            self.beacon_reported.pop(next(iter(self.beacon_reported)))
        return out

    async def flush(self) -> None:
        stub = self.stub()
        if stub is None:
            return
        while self.pending:
            batch = self.pending[:MAX_PER_CALL]
            try:
                await stub.ReportSightings(gateway_pb2.SightingReport(sightings=batch), timeout=RPC_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    log.debug("%s: reporting sightings failed (%s); kept for the next poll", self.label,
                              exc.details())
                    return
                log.warning("%s: the controller refused %d sightings (%s)", self.label, len(batch),
                            exc.details())
            del self.pending[:len(batch)]
            self.reported += len(batch)
            if self.on_reported is not None:
                self.on_reported(batch, time.monotonic())
