"""Suspected command-and-control: per (LAN host, destination, port), a bounded timing summary of new
egress connections, scored by score.py, minus what is shared or allowed.

Why conntrack events: every new flow is one NEW event at the moment it starts (the timer we want to
see), and its DESTROY event says whether the far end ever answered and how many bytes went out. nft
log would need a rule and a log daemon per flow; flow counters give totals, not timing.

Kept out:
  - failed connection retries: a flow counts only once the far end answered (an UPDATE event without
    [UNREPLIED], or a DESTROY of a replied flow); a dead server retried every second would
    otherwise look like a 1 s beacon;
  - heartbeats many hosts share (an app to its CDN, NTP to the office server): a destination that
    PREVALENT_HOSTS or more LAN hosts reach is not one host's beacon;
  - allowed destinations and ports (DNS, NTP, DHCP by default; the router's own services).

Memory bound: at most MAX_PAIRS pairs of MAX_EVENTS (timestamp, bytes) each, and MAX_PENDING flows
awaiting their DESTROY, the oldest dropped first. Measured full (2,048 pairs of 48): about 9 MiB and
60-90 ms per scoring (the agent scores every 2 s); a small office LAN holds a few hundred KiB.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway_agent.beacons.score import MIN_INTERVALS, Score, score

MAX_PAIRS = 2048
MAX_EVENTS = 48
MAX_PENDING = 8192
PREVALENT_HOSTS = 3
ALLOWED_PORTS = frozenset({53, 67, 68, 123})
THRESHOLD = 80

Pair = tuple[str, str, int]  # (LAN host, destination, port)


@dataclass
class _Summary:
    times: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    sizes: deque[int] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))


@dataclass(frozen=True)
class Suspect:
    host: str
    destination: str
    port: int
    score: Score


class BeaconDetector:
    def __init__(self, *, threshold: int = THRESHOLD, allowed: Iterable[str] = (),
                 allowed_ports: Iterable[int] = ALLOWED_PORTS, started: float | None = None) -> None:
        self.threshold = threshold
        self.allowed = frozenset(allowed)
        self.allowed_ports = frozenset(allowed_ports)
        self.started = time.time() if started is None else started
        self.pairs: dict[Pair, _Summary] = {}
        self.pending: dict[int, tuple[Pair, float]] = {}  # conntrack id -> (pair, start)
        self.hosts_of: dict[tuple[str, int], set[str]] = {}  # (destination, port) -> LAN hosts

    def new(self, conn_id: int, host: str, destination: str, port: int, at: float) -> None:
        """A flow started; it counts once answered (replied)."""
        if destination in self.allowed or port in self.allowed_ports:
            return
        self.pending[conn_id] = ((host, destination, port), at)
        if len(self.pending) > MAX_PENDING:
            self.pending.pop(next(iter(self.pending)))

    def replied(self, conn_id: int) -> None:
        """The far end answered: the flow's start is one beat of its pair."""
        found = self.pending.get(conn_id)
        if found is None or found[1] < 0:
            return
        pair, at = found
        self.pending[conn_id] = (pair, -1.0)  # counted; its DESTROY still brings the bytes
        summary = self.pairs.pop(pair, None) or _Summary()
        self.pairs[pair] = summary  # most recently seen last: the oldest is dropped first
        summary.times.append(at)
        if len(self.pairs) > MAX_PAIRS:
            self.pairs.pop(next(iter(self.pairs)))
        host, destination, port = pair
        hosts = self.hosts_of.pop((destination, port), set())
        self.hosts_of[(destination, port)] = hosts
        if len(hosts) < PREVALENT_HOSTS:
            hosts.add(host)
        if len(self.hosts_of) > MAX_PAIRS:
            self.hosts_of.pop(next(iter(self.hosts_of)))

    def destroy(self, conn_id: int, *, replied: bool, sent_bytes: int) -> None:
        if replied:
            self.replied(conn_id)
        found = self.pending.pop(conn_id, None)
        if found is None or not replied:
            return  # never answered: a retry, no beat
        summary = self.pairs.get(found[0])
        if summary is not None:
            summary.sizes.append(sent_bytes)

    def suspects(self, now: float | None = None) -> list[Suspect]:
        observed = (time.time() if now is None else now) - self.started
        out = []
        for (host, destination, port), summary in self.pairs.items():
            if len(summary.times) <= MIN_INTERVALS:  # cheap: most pairs never get that far
                continue
            if len(self.hosts_of.get((destination, port), ())) >= PREVALENT_HOSTS:
                continue
            scored = score(summary.times, summary.sizes, observed)
            if scored is not None and scored.score >= self.threshold:
                out.append(Suspect(host, destination, port, scored))
        return out
