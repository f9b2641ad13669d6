"""Benchmark: a large feed from import to every agent's applied state (issue 11); prints JSON.

The controller runs as `msspctl server run` (embedded nats-server, SQLite); N real agents (recording
backend) run in one worker process (bench/propagation.py's worker). A plain feed of L lines is
added as a path feed and run: the time from the RunFeed call to every agent having applied the
last push it made. Then 1% of the lines change and the feed runs again: only the delta is pushed;
reported is the time from the run's commit (its answer) to every agent having applied it.

    python bench/ioc_fanout.py [--lines 1000000] [--agents 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet_worker import Worker, start_controller, stop_all
from ioc_import import feed_lines

from controller.simulation import CALL_TIMEOUT, OperatorApi
from mssp.v1 import intel_pb2, intel_pb2_grpc


async def run_feed(op: OperatorApi, stub: intel_pb2_grpc.IntelServiceStub, name: str,
                   ) -> intel_pb2.FeedRunResult:
    return await stub.RunFeed(intel_pb2.FeedRef(name=name), metadata=op._metadata,
                              timeout=CALL_TIMEOUT * 20)


def wait_applied(procs: list[Worker], seq: int, t0: float) -> float:
    """Seconds from t0 until every agent applied global seq `seq`."""
    for w in procs:
        w.send({"op": "wait", "seq": seq, "t0": t0, "within": 1200})
    return max(x for w in procs for x in w.recv()["latencies_ms"]) / 1000  # type: ignore[union-attr]


async def measure(lines: int, agents: int, root: Path) -> dict[str, object]:
    data_dir = root / "controller"
    controller, _ = start_controller(data_dir)
    procs: list[Worker] = []
    try:
        info = json.loads((data_dir / "controller.json").read_text())
        op = OperatorApi(info["grpc"], (data_dir / "pki" / "ca.crt").read_bytes(),
                         (data_dir / "operator.token").read_text().strip())
        stub = intel_pb2_grpc.IntelServiceStub(op._channel)
        await op.create_tenant("bench")
        tokens = [await op.add_gateway("bench", f"gw-{i:03d}") for i in range(agents)]
        proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "propagation.py"), "--worker"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        worker = Worker(proc)
        procs.append(worker)
        worker.send({"controller": info["grpc"], "tokens": tokens, "state_root": str(root / "agents")})
        ready = worker.recv()
        values = feed_lines(lines)
        feed = data_dir / "feeds" / "feed.txt"  # path feeds live under the controller's feed directory
        feed.parent.mkdir(exist_ok=True)
        feed.write_text("\n".join(values) + "\n")
        await stub.AddFeed(intel_pb2.AddFeedRequest(name="bench", path=str(feed), format="plain",
                                                    every_seconds=7 * 86400), metadata=op._metadata)
        t0 = time.monotonic()
        first = await run_feed(op, stub, "bench")
        run_s = time.monotonic() - t0
        applied_s = await asyncio.to_thread(wait_applied, procs, first.result.seqs[-1], t0)
        for i in range(0, lines, 100):  # 1% replaced by addresses the feed does not hold
            values[i] = f"200.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        feed.write_text("\n".join(values) + "\n")
        t0 = time.monotonic()
        second = await run_feed(op, stub, "bench")
        committed = time.monotonic()
        delta_s = await asyncio.to_thread(wait_applied, procs, second.result.seqs[-1], committed)
        await op.close()
        return {
            "lines": lines, "agents": agents, "agent_rss_kib_total": int(ready["rss_kib"]),
            "full": {"feed_run_seconds": round(run_s, 2),
                     "applied_at_all_agents_seconds": round(applied_s, 2),
                     "pushes": len(first.result.seqs), "new": first.result.new},
            "delta_1pct": {"feed_run_seconds": round(committed - t0, 2),
                           "applied_after_commit_seconds": round(delta_s, 3),
                           "pushes": len(second.result.seqs), "new": second.result.new,
                           "removed": second.result.removed},
        }
    finally:
        stop_all(procs, controller, worker_wait=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=10)
    args = parser.parse_args()
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="mssp-bench-fanout-", dir=shm if shm.is_dir() else None))
    try:
        result = asyncio.run(measure(args.lines, args.agents, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"benchmark": "ioc_fanout", "cpus": os.cpu_count(), **result}, indent=2))


if __name__ == "__main__":
    main()
