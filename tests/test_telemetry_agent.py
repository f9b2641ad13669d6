"""Agent-side telemetry without a broker: the spool (bounds, drops, order, crash safety), counter
deltas and resets, dnsmasq query-log parsing, and the publisher's drain order over a fake JetStream."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway_agent.counters import CounterSample
from gateway_agent.telemetry.collector import (
    DNS_BLOCKED,
    DNS_QUERIES,
    OTHER,
    DnsLogParser,
    DnsSummary,
    TelemetryCollector,
    counter_deltas,
    dns_records,
    read_new_lines,
)
from gateway_agent.telemetry.publisher import TelemetryPublisher, batch_subject, create_publisher
from gateway_agent.telemetry.spool import TelemetrySpool
from mssp.common.metrics import CATEGORY_BYTES, HOST_EGRESS, HOST_FLOWS, IOC_HITS
from mssp.v1 import common_pb2, telemetry_pb2
from tests.support.waiting import eventually

TENANT, GATEWAY = "t1", "gw1"


class FakeCounters:
    """A CounterSource whose cumulative values the test sets."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], tuple[int, int]] = {}
        self.fail = False

    def set(self, metric: str, dimension: str, packets: int, nbytes: int) -> None:
        self.values[(metric, dimension)] = (packets, nbytes)

    def read_counters(self) -> list[CounterSample]:
        if self.fail:
            raise RuntimeError("nft is not answering")
        return [CounterSample(m, d, p, b) for (m, d), (p, b) in self.values.items()]


def totals(batches: list[telemetry_pb2.TelemetryBatch]) -> dict[tuple[str, str], tuple[int, int, int]]:
    out: dict[tuple[str, str], tuple[int, int, int]] = {}
    for batch in batches:
        for r in batch.records:
            p, b, c = out.get((r.metric, r.dimension), (0, 0, 0))
            out[(r.metric, r.dimension)] = (p + r.packets, b + r.bytes, c + r.count)
    return out


def make_collector(directory: Path, source: FakeCounters | None = None, **kw: Any) -> TelemetryCollector:
    return TelemetryCollector(directory, tenant_id=TENANT, gateway_id=GATEWAY, source=source, **kw)


def step(collector: TelemetryCollector, spool: TelemetrySpool | None = None) -> telemetry_pb2.TelemetryBatch:
    """What the publisher does per tick: collect, spool, commit."""
    pending = collector.collect()
    if spool is not None:
        spool.append(pending.batch.batch_seq, pending.batch.SerializeToString())
    collector.commit(pending)
    return pending.batch


# ---- spool -------------------------------------------------------------------------------------


def test_spool_replays_in_seq_order_and_survives_reopen(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "spool")
    for seq in (3, 1, 2):
        spool.append(seq, f"batch-{seq}".encode())
    assert list(spool) == [(1, b"batch-1"), (2, b"batch-2"), (3, b"batch-3")]

    reopened = TelemetrySpool(tmp_path / "spool")  # a restart (or a crash: nothing is flushed on close)
    assert list(reopened) == [(1, b"batch-1"), (2, b"batch-2"), (3, b"batch-3")]
    reopened.remove(1)
    assert reopened.seqs() == [2, 3]
    assert TelemetrySpool(tmp_path / "spool").seqs() == [2, 3]


def test_spool_drops_oldest_when_full_and_counts_drops_persistently(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "spool", max_batches=3)
    dropped = [spool.append(seq, b"x" * 10) for seq in range(1, 6)]
    assert dropped == [0, 0, 0, 1, 1]
    assert spool.seqs() == [3, 4, 5]
    assert spool.drops == 2
    again = TelemetrySpool(tmp_path / "spool", max_batches=3)
    assert again.drops == 2
    assert again.seqs() == [3, 4, 5]


def test_spool_byte_bound_keeps_the_newest(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "spool", max_bytes=400)
    for seq in range(1, 6):
        spool.append(seq, b"y" * 100)  # 124 bytes on disk each with the header (magic, crc, nonce)
    assert spool.seqs() == [3, 4, 5]
    assert spool.size_bytes <= 400
    assert spool.drops == 2
    # A single batch larger than the bound is still kept (dropping it would lose the newest data).
    spool.append(9, b"z" * 1000)
    assert spool.seqs() == [9]


def test_spool_ignores_interrupted_writes_and_discards_corrupt_files(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = TelemetrySpool(directory)
    spool.append(1, b"first")
    spool.append(2, b"second")
    spool.append(3, b"third")
    # A crash mid-append leaves only a temp file: it was never renamed, so it never existed.
    (directory / f"{4:020d}.batch.tmp").write_bytes(b"partial")
    # Flash corruption of a stored batch: caught by the checksum, discarded, counted.
    path = directory / f"{2:020d}.batch"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    reopened = TelemetrySpool(directory)
    assert not list(directory.glob("*.tmp"))
    assert list(reopened) == [(1, b"first"), (3, b"third")]
    assert reopened.corrupt == 1
    assert reopened.seqs() == [1, 3]


def test_spool_same_seq_replaces_the_unsent_copy(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "spool", max_batches=2)
    spool.append(7, b"old")
    spool.append(7, b"newer superset")
    assert list(spool) == [(7, b"newer superset")]
    assert spool.drops == 0


def test_spool_rejects_nonsense_bounds(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TelemetrySpool(tmp_path / "s", max_batches=0)


# ---- counter deltas ----------------------------------------------------------------------------


def test_counter_deltas_first_read_then_differences() -> None:
    first, base = counter_deltas({}, [CounterSample(HOST_EGRESS, "192.0.2.10", 10, 1000)])
    assert [(r.metric, r.dimension, r.packets, r.bytes) for r in first] == [
        (HOST_EGRESS, "192.0.2.10", 10, 1000)
    ]
    second, base = counter_deltas(base, [CounterSample(HOST_EGRESS, "192.0.2.10", 15, 1600)])
    assert [(r.packets, r.bytes) for r in second] == [(5, 600)]
    unchanged, base = counter_deltas(base, [CounterSample(HOST_EGRESS, "192.0.2.10", 15, 1600)])
    assert unchanged == []  # nothing happened: no record


def test_counter_reset_counts_the_new_value() -> None:
    _, base = counter_deltas({}, [CounterSample(HOST_EGRESS, "h", 100, 50_000)])
    records, base = counter_deltas(base, [CounterSample(HOST_EGRESS, "h", 3, 200)])  # ruleset re-applied
    assert [(r.packets, r.bytes) for r in records] == [(3, 200)]
    records, _ = counter_deltas(base, [CounterSample(HOST_EGRESS, "h", 4, 300)])
    assert [(r.packets, r.bytes) for r in records] == [(1, 100)]


def test_counter_that_disappears_and_returns_starts_from_zero() -> None:
    _, base = counter_deltas({}, [CounterSample(IOC_HITS, "203.0.113.9|192.0.2.5", 5, 500)])
    records, base = counter_deltas(base, [])  # IOC removed, its element and counter gone
    assert records == [] and base == {}
    records, _ = counter_deltas(base, [CounterSample(IOC_HITS, "203.0.113.9|192.0.2.5", 2, 120)])
    assert [(r.packets, r.bytes) for r in records] == [(2, 120)]


def test_duplicate_samples_are_summed() -> None:
    samples = [CounterSample(HOST_FLOWS, "h", 1, 10), CounterSample(HOST_FLOWS, "h", 2, 20)]
    records, base = counter_deltas({}, samples)
    assert [(r.packets, r.bytes) for r in records] == [(3, 30)]
    assert base == {(HOST_FLOWS, "h"): (3, 30)}


# ---- the collector -----------------------------------------------------------------------------


def test_collector_totals_equal_kernel_counters_across_restarts_and_resets(tmp_path: Path) -> None:
    source = FakeCounters()
    collector = make_collector(tmp_path, source)
    sent: list[telemetry_pb2.TelemetryBatch] = []
    source.set(HOST_EGRESS, "192.0.2.10", 10, 1_000)
    source.set(CATEGORY_BYTES, "cloud-storage|192.0.2.10", 4, 400)
    sent.append(step(collector))
    source.set(HOST_EGRESS, "192.0.2.10", 30, 3_000)
    sent.append(step(collector))

    collector = make_collector(tmp_path, source)  # agent restart: baseline and seq come from disk
    source.set(HOST_EGRESS, "192.0.2.10", 35, 3_500)
    sent.append(step(collector))
    source.set(HOST_EGRESS, "192.0.2.10", 5, 700)  # full apply reset the kernel counter
    source.set(CATEGORY_BYTES, "cloud-storage|192.0.2.10", 1, 100)
    sent.append(step(collector))

    assert totals(sent) == {
        (HOST_EGRESS, "192.0.2.10"): (35 + 5, 3_500 + 700, 0),
        (CATEGORY_BYTES, "cloud-storage|192.0.2.10"): (4 + 1, 400 + 100, 0),
    }
    seqs = [b.batch_seq for b in sent]
    assert seqs == list(range(seqs[0], seqs[0] + 4))  # +1 per batch, also across the restart
    assert all(b.tenant_id == TENANT and b.gateway_id == GATEWAY for b in sent)
    assert all(b.period_start_ms <= b.period_end_ms for b in sent)


def test_crash_between_spool_and_commit_rebuilds_the_same_seq(tmp_path: Path) -> None:
    """No double counting: the rebuilt batch overwrites the unsent copy in the spool."""
    source = FakeCounters()
    spool = TelemetrySpool(tmp_path / "spool")
    collector = make_collector(tmp_path / "c", source)
    source.set(HOST_EGRESS, "h", 1, 100)
    step(collector, spool)

    source.set(HOST_EGRESS, "h", 3, 300)
    pending = collector.collect()
    spool.append(pending.batch.batch_seq, pending.batch.SerializeToString())
    # ... the agent dies here, before commit ...
    collector = make_collector(tmp_path / "c", source)
    source.set(HOST_EGRESS, "h", 6, 600)
    rebuilt = step(collector, spool)

    assert rebuilt.batch_seq == pending.batch.batch_seq  # same id: overwrote the unsent copy
    stored = [telemetry_pb2.TelemetryBatch.FromString(data) for _, data in spool]
    assert len(stored) == 2
    assert totals(stored) == {(HOST_EGRESS, "h"): (6, 600, 0)}


def test_fresh_or_lost_state_restarts_seq_above_anything_sent_before(tmp_path: Path) -> None:
    collector = make_collector(tmp_path)
    first = step(collector).batch_seq
    (tmp_path / "collector.json").write_text("{not json")
    again = make_collector(tmp_path)
    assert step(again).batch_seq > first


def test_counter_read_failure_keeps_the_baseline(tmp_path: Path) -> None:
    source = FakeCounters()
    collector = make_collector(tmp_path, source)
    source.set(HOST_EGRESS, "h", 1, 100)
    sent = [step(collector)]
    source.set(HOST_EGRESS, "h", 2, 250)
    source.fail = True
    sent.append(step(collector))
    assert list(sent[-1].records) == []
    source.fail = False
    source.set(HOST_EGRESS, "h", 4, 400)
    sent.append(step(collector))
    assert totals(sent) == {(HOST_EGRESS, "h"): (4, 400, 0)}
    assert collector.read_errors == 1


def test_health_comes_from_proc_and_the_agent(tmp_path: Path) -> None:
    versions = common_pb2.Versions(global_seq=7, tenant_seq=3)
    collector = make_collector(tmp_path, applied=lambda: versions, apply_errors=lambda: 2)
    batch = collector.collect(spool_drops=5, spool_depth=9).batch
    h = batch.health
    assert h.rss_bytes > 1_000_000  # a Python process
    assert h.cpu_seconds > 0
    assert (h.apply_errors, h.spool_drops, h.spool_depth) == (2, 5, 9)
    assert h.applied == versions
    assert h.agent_version


# ---- DNS query log -----------------------------------------------------------------------------

LOG = """\
Nov 25 22:01:02 dnsmasq[123]: query[A] files.storage.test from 192.0.2.10
Nov 25 22:01:02 dnsmasq[123]: forwarded files.storage.test to 198.51.100.53
Nov 25 22:01:02 dnsmasq[123]: reply files.storage.test is 203.0.113.7
Nov 25 22:01:03 dnsmasq[123]: query[AAAA] Files.Storage.test. from 192.0.2.10
Nov 25 22:01:04 dnsmasq[123]: query[A] c2.evil.test from 192.0.2.11
Nov 25 22:01:04 dnsmasq[123]: config c2.evil.test is NXDOMAIN
Nov 25 22:01:05 dnsmasq[123]: query[A] tracker.bad.test from 192.0.2.12
Nov 25 22:01:05 dnsmasq[123]: config tracker.bad.test is 0.0.0.0
Nov 25 22:01:06 dnsmasq[123]: query[A] router.lan from 192.0.2.12
Nov 25 22:01:06 dnsmasq[123]: config router.lan is 192.0.2.1
Nov 25 22:01:07 dnsmasq[123]: 17 192.0.2.13/40000 query[A] c2.evil.test from 192.0.2.13
Nov 25 22:01:07 dnsmasq[123]: 18 192.0.2.11/40001 query[A] c2.evil.test from 192.0.2.11
Nov 25 22:01:07 dnsmasq[123]: 17 192.0.2.13/40000 config c2.evil.test is NXDOMAIN
Nov 25 22:01:08 kernel: something unrelated query[A] x from y
garbage line
"""


def test_dnsmasq_log_lines_become_query_and_sinkhole_counts() -> None:
    summary = DnsSummary()
    DnsLogParser().feed(LOG.splitlines(), summary)
    assert dict(summary.queries) == {
        ("files.storage.test", "192.0.2.10"): 2,
        ("c2.evil.test", "192.0.2.11"): 2,
        ("tracker.bad.test", "192.0.2.12"): 1,
        ("router.lan", "192.0.2.12"): 1,
        ("c2.evil.test", "192.0.2.13"): 1,
    }
    # Sinkholed: NXDOMAIN and 0.0.0.0 from config; a local name (router.lan) is not a block. The
    # "extra" format's serial attributes the last block to .13, not to the last querier .11.
    assert dict(summary.blocked) == {
        ("c2.evil.test", "192.0.2.11"): 1,
        ("tracker.bad.test", "192.0.2.12"): 1,
        ("c2.evil.test", "192.0.2.13"): 1,
    }


def test_dns_records_fold_the_long_tail() -> None:
    summary = DnsSummary()
    for i in range(10):
        summary.queries[(f"d{i}.test", "192.0.2.1")] += 10 - i
    records = dns_records(summary, limit=4)
    assert [(r.dimension, r.count) for r in records] == [
        ("d0.test|192.0.2.1", 10), ("d1.test|192.0.2.1", 9), ("d2.test|192.0.2.1", 8), (f"{OTHER}|", 28),
    ]
    assert sum(r.count for r in records) == sum(summary.queries.values())


def test_log_tail_reads_whole_lines_and_follows_rotation(tmp_path: Path) -> None:
    log = tmp_path / "dnsmasq.log"
    log.write_text("line one\nline tw")
    lines, inode, offset = read_new_lines(log, 0, 0)
    assert lines == ["line one"]
    lines, inode, offset = read_new_lines(log, inode, offset)
    assert lines == []  # the half-written line waits
    with log.open("a") as f:
        f.write("o\n")
    lines, inode, offset = read_new_lines(log, inode, offset)
    assert lines == ["line two"]

    log.rename(tmp_path / "dnsmasq.log.1")  # logrotate
    log.write_text("fresh\n")
    lines, inode2, offset = read_new_lines(log, inode, offset)
    assert lines == ["fresh"] and inode2 != inode

    log.write_text("")  # copytruncate
    with log.open("a") as f:
        f.write("after truncate\n")
    lines, _, _ = read_new_lines(log, inode2, offset + 100)
    assert lines == ["after truncate"]
    assert read_new_lines(tmp_path / "missing.log", 5, 10) == ([], 5, 10)


def test_collector_reads_the_query_log_once(tmp_path: Path) -> None:
    log = tmp_path / "dnsmasq.log"
    log.write_text(LOG)
    collector = make_collector(tmp_path / "c", dns_log=log)
    first = step(collector)
    assert totals([first])[(DNS_QUERIES, "files.storage.test|192.0.2.10")] == (0, 0, 2)
    assert totals([first])[(DNS_BLOCKED, "tracker.bad.test|192.0.2.12")] == (0, 0, 1)
    restarted = make_collector(tmp_path / "c", dns_log=log)
    with log.open("a") as f:
        f.write("Nov 25 22:02:00 dnsmasq[123]: query[A] files.storage.test from 192.0.2.10\n")
    second = step(restarted)
    assert totals([second]) == {(DNS_QUERIES, "files.storage.test|192.0.2.10"): (0, 0, 1)}


# ---- the publisher's drain, against a fake JetStream -------------------------------------------


@dataclass
class FakeAck:
    duplicate: bool | None = None


@dataclass
class FakeJetStream:
    log: list[tuple[str, int, str]] = field(default_factory=list)
    fail_after: int | None = None
    seen: set[str] = field(default_factory=set)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> FakeAck:
        if self.fail_after is not None and len(self.log) >= self.fail_after:
            raise TimeoutError("no PubAck")
        msg_id = headers["Nats-Msg-Id"]
        batch = telemetry_pb2.TelemetryBatch.FromString(payload)
        self.log.append((subject, batch.batch_seq, msg_id))
        dup = msg_id in self.seen
        self.seen.add(msg_id)
        return FakeAck(duplicate=True if dup else None)


@dataclass
class FakeNats:
    js: FakeJetStream
    is_connected: bool = True

    def jetstream(self, timeout: float) -> FakeJetStream:
        return self.js


async def test_publisher_spools_while_offline_and_replays_in_order(tmp_path: Path) -> None:
    source = FakeCounters()
    spool = TelemetrySpool(tmp_path / "spool")
    collector = make_collector(tmp_path / "c", source)
    connection: list[FakeNats | None] = [None]
    publisher = TelemetryPublisher(collector, spool, lambda: connection[0], interval=3600)  # type: ignore

    seqs = []
    for i in range(1, 5):
        source.set(HOST_EGRESS, "h", i, i * 100)
        seqs.append(await publisher.tick())
    assert spool.seqs() == seqs  # offline: everything waits on disk

    js = FakeJetStream(fail_after=2)
    connection[0] = FakeNats(js)
    assert await publisher.drain() == 2  # the broker fails after two: the rest stays, in order
    assert spool.seqs() == seqs[2:]
    js.fail_after = None
    assert await publisher.drain() == 2
    assert len(spool) == 0
    assert [seq for _, seq, _ in js.log] == seqs
    assert {subject for subject, _, _ in js.log} == {batch_subject(TENANT, GATEWAY)}
    ids = [msg_id for _, _, msg_id in js.log]
    assert [i.rpartition(":")[0] for i in ids] == [f"{GATEWAY}:{seq}" for seq in seqs]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i.rpartition(":")[2]) for i in ids)  # the spooled nonce
    assert len({i.rpartition(":")[2] for i in ids}) == len(ids)
    assert publisher.stats.published == 4 and publisher.stats.failures == 1


async def test_publisher_run_loop_ticks_and_wakes(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "spool")
    collector = make_collector(tmp_path / "c")
    js = FakeJetStream()
    nc = FakeNats(js, is_connected=False)
    publisher = TelemetryPublisher(collector, spool, lambda: nc, interval=0.05)  # type: ignore
    publisher.start()
    try:
        await eventually_fast(lambda: len(spool) >= 3)
        nc.is_connected = True
        publisher.wake()  # what the agent's reconnected callback does
        await eventually_fast(lambda: len(js.log) >= 3)
    finally:
        await publisher.stop()
    seqs = [seq for _, seq, _ in js.log]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_replay_after_an_outage_is_spread_not_at_once(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    windows: list[tuple[float, float]] = []

    def latest(low: float, high: float) -> float:
        windows.append((low, high))
        return high

    spool = TelemetrySpool(tmp_path / "spool")
    js = FakeJetStream()
    nc = FakeNats(js, is_connected=False)
    publisher = TelemetryPublisher(make_collector(tmp_path / "c"), spool, lambda: nc, interval=30)  # type: ignore
    await publisher.tick()  # spooled while the broker was away
    publisher.start()
    try:
        nc.is_connected = True
        monkeypatch.setattr("gateway_agent.telemetry.publisher.random.uniform", latest)
        publisher.wake(spread=True)  # NATS is back: the replay waits its turn in a 10 s window
        assert windows == [(0, 10.0)]
        await asyncio.sleep(0.3)
        assert js.log == [] and len(spool) == 1
        publisher.wake()  # an explicit drain goes now, and replaces the pending one
        await eventually_fast(lambda: len(js.log) == 1)
        assert publisher._replay is None
        publisher.wake(spread=True)
    finally:
        await publisher.stop()
    assert publisher._replay is not None and publisher._replay.cancelled()  # nothing left behind


def test_spool_files_are_private(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "spool")
    spool.append(1, b"x")
    mode = os.stat(tmp_path / "spool" / f"{1:020d}.batch").st_mode & 0o777
    assert mode == 0o600


async def test_create_publisher_keeps_everything_in_the_state_dir(tmp_path: Path) -> None:
    source = FakeCounters()
    source.set(HOST_EGRESS, "192.0.2.10", 1, 100)
    publisher = create_publisher(tmp_path, tenant_id=TENANT, gateway_id=GATEWAY, connection=lambda: None,
                                 source=source, interval=30)
    seq = await publisher.tick()
    assert (tmp_path / "telemetry" / "collector.json").exists()
    assert (tmp_path / "telemetry" / "spool" / f"{seq:020d}.batch").exists()
    again = create_publisher(tmp_path, tenant_id=TENANT, gateway_id=GATEWAY, connection=lambda: None)
    assert again.spool.seqs() == [seq]
    assert again.collector.state.seq == seq


async def eventually_fast(condition: Callable[[], bool], within: float = 10.0) -> None:
    await eventually(condition, within, interval=0.01)
