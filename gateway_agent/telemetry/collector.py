"""What goes into a telemetry batch: counter deltas, DNS query summaries and the agent's health.

The kernel keeps cumulative counters; the controller wants what happened in each period. So the
collector keeps the last values it reported (persisted, or a restarted agent would report the
kernel's whole history again) and sends differences; a counter that went down was reset (a full
ruleset apply) and its new value is the delta.

Crash safety comes from the order the publisher uses: `collect()` builds batch N without touching
disk, the spool stores it, and only then `commit()` persists "N sent, counters at X". A crash in
between rebuilds batch N from the old baseline: the same seq with a superset of the records, which
overwrites the unsent copy in the spool. Nothing is lost and nothing counts twice.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway_agent import __version__
from gateway_agent.counters import CounterSample, CounterSource
from mssp.common.clock import now_ms as clock_ms
from mssp.common.files import write_atomic
from mssp.common.metrics import DNS_BLOCKED, DNS_QUERIES
from mssp.common.telemetry_bounds import clamp_period_start
from mssp.v1 import common_pb2, telemetry_pb2

log = logging.getLogger("mssp.agent.telemetry")

OTHER = "(other)"
STATE_FILE = "collector.json"
# A batch must stay far below the broker's 1 MiB max_payload and the controller's record limit.
MAX_DNS_DIMENSIONS = 500  # per DNS metric
MAX_COUNTER_RECORDS = 4000
MAX_BATCH_BYTES = 900 * 1024
MAX_LOG_READ = 8 * 1024 * 1024  # bytes of query log read per period; the rest waits for the next one
_CLIENT_MEMORY = 4096  # names whose last querying client we remember (to attribute "config" lines)
_SINKHOLE_ANSWERS = frozenset({"NXDOMAIN", "NODATA", "NODATA-IPv4", "NODATA-IPv6", "0.0.0.0", "::"})

CounterKey = tuple[str, str]

# "<ts> dnsmasq[123]: query[A] files.storage.test from 192.0.2.10"; with log-queries=extra the
# message starts with a serial and the client's address/port: "7 192.0.2.10/41234 query[A] ...".
_QUERY_RE = re.compile(
    r"dnsmasq\[\d+\]: (?:(?P<serial>\d+) \S+ )?query\[[A-Za-z0-9]+\] (?P<name>\S+) from (?P<client>\S+)\s*$"
)
_CONFIG_RE = re.compile(
    r"dnsmasq\[\d+\]: (?:(?P<serial>\d+) \S+ )?config (?P<name>\S+) is (?P<answer>\S+)\s*$"
)


# ---- counters -----------------------------------------------------------------------------------


def counter_deltas(
    previous: dict[CounterKey, tuple[int, int]], samples: Iterable[CounterSample]
) -> tuple[list[telemetry_pb2.TelemetryRecord], dict[CounterKey, tuple[int, int]]]:
    """(records for the non-zero deltas, the new baseline). Keys not read again leave the baseline:
    an element that comes back later starts from zero, as the kernel's counter does."""
    current: dict[CounterKey, tuple[int, int]] = {}
    for s in samples:
        key = (s.metric, s.dimension)
        packets, nbytes = current.get(key, (0, 0))
        current[key] = (packets + max(s.packets, 0), nbytes + max(s.bytes, 0))
    records = []
    for key, (packets, nbytes) in current.items():
        last_packets, last_bytes = previous.get(key, (0, 0))
        if packets < last_packets or nbytes < last_bytes:  # reset: everything since counts
            d_packets, d_bytes = packets, nbytes
        else:
            d_packets, d_bytes = packets - last_packets, nbytes - last_bytes
        if d_packets or d_bytes:
            records.append(telemetry_pb2.TelemetryRecord(
                metric=key[0], dimension=key[1], packets=d_packets, bytes=d_bytes
            ))
    return records, current


# ---- DNS query log -----------------------------------------------------------------------------


@dataclass
class DnsSummary:
    queries: Counter[tuple[str, str]] = field(default_factory=Counter)
    blocked: Counter[tuple[str, str]] = field(default_factory=Counter)


class DnsLogParser:
    """Turns dnsmasq log-queries lines into per (domain, client) counts.

    A "config NAME is NXDOMAIN" line names no client; it answers the query just logged for NAME
    (or the one with the same serial in the "extra" format), so the last client per name is kept.
    """

    def __init__(self) -> None:
        self._last_client: OrderedDict[str, str] = OrderedDict()
        self._serial_client: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def _remember(memory: OrderedDict[str, str], key: str, value: str) -> None:
        memory[key] = value
        memory.move_to_end(key)
        if len(memory) > _CLIENT_MEMORY:
            memory.popitem(last=False)

    def feed(self, lines: Iterable[str], summary: DnsSummary) -> None:
        for line in lines:
            if "dnsmasq[" not in line:
                continue
            m = _QUERY_RE.search(line)
            if m:
                name = _domain(m["name"])
                client = m["client"]
                summary.queries[(name, client)] += 1
                self._remember(self._last_client, name, client)
                if m["serial"]:
                    self._remember(self._serial_client, m["serial"], client)
                continue
            m = _CONFIG_RE.search(line)
            if m and m["answer"] in _SINKHOLE_ANSWERS:
                name = _domain(m["name"])
                by_serial = self._serial_client.get(m["serial"]) if m["serial"] else None
                client = by_serial or self._last_client.get(name, "")
                summary.blocked[(name, client)] += 1


def _domain(raw: str) -> str:
    return raw.rstrip(".").lower()


def read_new_lines(path: Path, inode: int, offset: int) -> tuple[list[str], int, int]:
    """Complete lines appended since (inode, offset); a rotated or truncated file restarts at 0."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return [], inode, offset
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_ino != inode or st.st_size < offset:
            inode, offset = st.st_ino, 0
        fh.seek(offset)
        data = fh.read(MAX_LOG_READ)
    end = data.rfind(b"\n")
    if end < 0:
        if len(data) >= MAX_LOG_READ:  # one absurd line: skip it rather than stall forever
            return [], inode, offset + len(data)
        return [], inode, offset
    chunk = data[: end + 1]
    return chunk.decode("utf-8", errors="replace").splitlines(), inode, offset + len(chunk)


def dns_records(summary: DnsSummary, limit: int = MAX_DNS_DIMENSIONS) -> list[telemetry_pb2.TelemetryRecord]:
    """Bounded: the busiest (domain, host) pairs by name, the long tail folded into "(other)|"."""
    out: list[telemetry_pb2.TelemetryRecord] = []
    for metric, counts in ((DNS_QUERIES, summary.queries), (DNS_BLOCKED, summary.blocked)):
        ranked = counts.most_common()
        head, tail = ranked[: limit - 1], ranked[limit - 1 :]
        if len(tail) == 1:
            head, tail = ranked, []
        for (name, client), n in head:
            out.append(telemetry_pb2.TelemetryRecord(metric=metric, dimension=f"{name}|{client}", count=n))
        if tail:
            rest = sum(n for _, n in tail)
            out.append(telemetry_pb2.TelemetryRecord(metric=metric, dimension=f"{OTHER}|", count=rest))
    return out


# ---- health ------------------------------------------------------------------------------------


def process_health() -> tuple[int, float]:
    """(resident bytes, user+system CPU seconds) of this process, from /proc/self when there is one."""
    try:
        with open("/proc/self/statm", "rb") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return rss, (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


# ---- the collector -----------------------------------------------------------------------------


@dataclass
class CollectorState:
    seq: int
    period_end_ms: int
    counters: dict[CounterKey, tuple[int, int]] = field(default_factory=dict)
    dns_inode: int = 0
    dns_offset: int = 0

    def to_json(self) -> bytes:
        return json.dumps({
            "seq": self.seq,
            "period_end_ms": self.period_end_ms,
            "counters": [[m, d, p, b] for (m, d), (p, b) in self.counters.items()],
            "dns": {"inode": self.dns_inode, "offset": self.dns_offset},
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CollectorState:
        obj = json.loads(data)
        return cls(
            seq=int(obj["seq"]),
            period_end_ms=int(obj["period_end_ms"]),
            counters={(str(m), str(d)): (int(p), int(b)) for m, d, p, b in obj.get("counters", [])},
            dns_inode=int(obj.get("dns", {}).get("inode", 0)),
            dns_offset=int(obj.get("dns", {}).get("offset", 0)),
        )


@dataclass
class PendingBatch:
    """A batch and the collector state to persist once the batch is safely in the spool."""

    batch: telemetry_pb2.TelemetryBatch
    state: CollectorState


def _fit(batch: telemetry_pb2.TelemetryBatch) -> None:
    """Last resort against the broker's max_payload: shed the smallest records (DNS long tail last in)."""
    size = batch.ByteSize()
    if size <= MAX_BATCH_BYTES:
        return
    log.warning("telemetry batch of %d bytes is too large; shedding records", size)
    while batch.records and batch.ByteSize() > MAX_BATCH_BYTES:
        del batch.records[-max(1, len(batch.records) // 10) :]


class TelemetryCollector:
    def __init__(
        self,
        directory: Path,
        *,
        tenant_id: str,
        gateway_id: str,
        source: CounterSource | None = None,
        dns_log: Path | None = None,
        applied: Callable[[], common_pb2.Versions] | None = None,
        apply_errors: Callable[[], int] | None = None,
        agent_version: str = __version__,
        clock: Callable[[], int] | None = None,
    ) -> None:
        # Period ends in the controller's time when the router's clock is far off (gateway_agent/clock.py):
        # the controller refuses periods in the future or before the gateway enrolled.
        self.clock = clock or clock_ms
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.tenant_id = tenant_id
        self.gateway_id = gateway_id
        self.source = source
        self.dns_log = dns_log
        self.applied = applied
        self.apply_errors = apply_errors
        self.agent_version = agent_version
        self.read_errors = 0
        self._dns = DnsLogParser()
        self.started_ms = clock_ms()
        self.state = self._load()

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    def _load(self) -> CollectorState:
        """A missing or unreadable state restarts the sequence at the current unix time in microseconds:
        above anything this gateway sent before (it would have had to send a batch every microsecond to
        get there), so the controller never mistakes new batches for duplicates."""
        fresh = CollectorState(seq=time.time_ns() // 1000, period_end_ms=self.clock())
        try:
            return CollectorState.from_json(self.state_path.read_bytes())
        except FileNotFoundError:
            return fresh
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("telemetry state %s unreadable (%s); starting a new sequence", self.state_path, exc)
            return fresh

    def collect(
        self, *, spool_drops: int = 0, spool_depth: int = 0, now_ms: int | None = None
    ) -> PendingBatch:
        """Build the next batch (blocking: reads counters and the log). Nothing is persisted here."""
        end = self.clock() if now_ms is None else now_ms
        prev = self.state
        records: list[telemetry_pb2.TelemetryRecord] = []
        counters = prev.counters
        if self.source is not None:
            try:
                samples = self.source.read_counters()
            except Exception as exc:  # keep the old baseline: the next good read covers both periods
                self.read_errors += 1
                log.warning("reading counters failed: %s", exc)
            else:
                counter_records, counters = counter_deltas(prev.counters, samples)
                if len(counter_records) > MAX_COUNTER_RECORDS:
                    log.warning("%d counter records; sending the %d largest", len(counter_records),
                                MAX_COUNTER_RECORDS)
                    counter_records.sort(key=lambda r: (r.bytes, r.packets), reverse=True)
                    counter_records = counter_records[:MAX_COUNTER_RECORDS]
                records.extend(counter_records)
        inode, offset = prev.dns_inode, prev.dns_offset
        if self.dns_log is not None:
            try:
                lines, inode, offset = read_new_lines(self.dns_log, inode, offset)
            except OSError as exc:
                self.read_errors += 1
                log.warning("reading %s failed: %s", self.dns_log, exc)
                lines = []
            summary = DnsSummary()
            self._dns.feed(lines, summary)
            records.extend(dns_records(summary))
        rss, cpu = process_health()
        health = telemetry_pb2.AgentHealth(
            rss_bytes=rss,
            cpu_seconds=cpu,
            apply_errors=self.apply_errors() if self.apply_errors else 0,
            spool_drops=spool_drops,
            spool_depth=spool_depth,
            agent_version=self.agent_version,
        )
        if self.applied is not None:
            health.applied.CopyFrom(self.applied())
        seq = prev.seq + 1
        # After a restart the period starts now, not when the last batch ended: the controller bills
        # the time batches cover, and the agent was not running in between.
        # Never longer than the controller accepts (a clock step or a suspended router must not bill
        # hours nobody measured; the counter deltas still all count).
        start = clamp_period_start(min(max(prev.period_end_ms, self.started_ms), end), end)
        batch = telemetry_pb2.TelemetryBatch(
            gateway_id=self.gateway_id,
            tenant_id=self.tenant_id,
            batch_seq=seq,
            period_start_ms=start,
            period_end_ms=end,
            health=health,
            records=records,
        )
        _fit(batch)
        state = CollectorState(
            seq=seq, period_end_ms=end, counters=counters, dns_inode=inode, dns_offset=offset
        )
        return PendingBatch(batch=batch, state=state)

    def commit(self, pending: PendingBatch) -> None:
        """Persist "batch N is made" atomically (tmp + fsync + rename)."""
        write_atomic(self.state_path, pending.state.to_json(), 0o600, sync_dir=False)
        self.state = pending.state
