"""Propagation latency: one `ioc add` through the operator API -> applied on every agent.

Prints JSON. The controller runs as `msspctl server run` (embedded nats-server, SQLite) in its own
process; N real agents (recording backend, each with its own keys, certificate, NATS connection
and credentials) run spread over worker processes. Latency = from just before the AddIoc call
to the moment each agent applied the delta (CLOCK_MONOTONIC is shared by all processes).

    python bench/propagation.py [--sizes 100 1000] [--rounds 5] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet_worker import Worker, commands, start_agents, start_controller, stop_all

from controller.simulation import OperatorApi, percentiles, wait_until


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---- worker process ----------------------------------------------------------------------------


async def worker_main() -> None:
    config = json.loads(sys.stdin.readline())
    baseline = rss_kib()
    agents = await start_agents(config)
    print(json.dumps({"ready": len(agents), "rss_kib": rss_kib(), "baseline_kib": baseline}), flush=True)
    async for cmd in commands():
        key = ("global", cmd["seq"])
        await wait_until(lambda k=key: all(k in a.applied_at for a in agents), within=cmd.get("within", 120),
                         interval=0.005)
        latencies = [(a.applied_at[key] - cmd["t0"]) * 1000 for a in agents]
        print(json.dumps({"latencies_ms": latencies, "rss_kib": rss_kib()}), flush=True)
    for a in agents:
        await a.stop()


# ---- parent ------------------------------------------------------------------------------------


async def measure(n: int, rounds: int, workers: int, gap: float, root: Path) -> dict[str, object]:
    data_dir = root / f"controller-{n}"
    controller, _ = start_controller(data_dir)
    procs: list[Worker] = []
    try:
        info = json.loads((data_dir / "controller.json").read_text())
        op = OperatorApi(info["grpc"], (data_dir / "pki" / "ca.crt").read_bytes(),
                         (data_dir / "operator.token").read_text().strip())
        tenants = max(1, n // 50)
        for t in range(tenants):
            await op.create_tenant(f"tenant-{t:03d}")
        tokens = [await op.add_gateway(f"tenant-{i % tenants:03d}", f"gw-{i:04d}") for i in range(n)]
        t_enroll = time.monotonic()
        per = [tokens[i::workers] for i in range(workers)]
        for w, chunk in enumerate(per):
            if not chunk:
                continue
            proc = subprocess.Popen(
                [sys.executable, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, start_new_session=True,
            )
            worker = Worker(proc)
            worker.send({"controller": info["grpc"], "tokens": chunk,
                         "state_root": str(root / f"agents-{n}-{w}")})
            procs.append(worker)
        ready = [w.recv() for w in procs]
        enroll_s = time.monotonic() - t_enroll
        agent_kib = sum(int(r["rss_kib"]) - int(r["baseline_kib"]) for r in ready) / n
        samples: list[float] = []
        round_max: list[float] = []
        for r in range(rounds):
            # Let the previous round's status reports (spread over ~1 s by the agents) settle:
            # each round measures one push into a quiet fleet.
            await asyncio.sleep(gap)
            t0 = time.monotonic()
            ioc = await op.add_ioc(f"198.51.100.{r + 1}")
            for w in procs:
                w.send({"op": "wait", "seq": ioc.seq, "t0": t0})
            latencies = [x for w in procs for x in w.recv()["latencies_ms"]]  # type: ignore[union-attr]
            samples += latencies
            round_max.append(max(latencies))
        await op.close()
        return {
            "agents": n,
            "rounds": rounds,
            "gap_seconds": gap,
            "worker_processes": len(procs),
            "enroll_and_sync_seconds": round(enroll_s, 2),
            "latency_ms": {k: round(v, 1) for k, v in percentiles(samples).items()},
            "round_max_ms": [round(x, 1) for x in round_max],
            "agent_rss_kib_each": round(agent_kib),
        }
    finally:
        stop_all(procs, controller, worker_wait=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--gap", type=float, default=3.0, help="seconds of quiet between rounds")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.worker:
        asyncio.run(worker_main())
        return
    # Simulated agents share one disk; a real router has its own. tmpfs keeps 1000 journals' fsyncs
    # from measuring this machine's disk instead of the push path.
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="mssp-bench-", dir=shm if shm.is_dir() else None))
    try:
        results = [asyncio.run(measure(n, args.rounds, args.workers, args.gap, root)) for n in args.sizes]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"benchmark": "propagation", "cpus": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
