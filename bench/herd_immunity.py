"""Herd immunity: from the kernel hit that completes the promotion policy to applied everywhere.

Prints JSON. The controller runs as `msspctl server run` (embedded nats-server, SQLite) with the
default policy (3 organisations, confidence 70); N real agents (recording backend) in T tenants,
all in the alliance, run in worker processes. Each round three tenants hold one new indicator in
their own channel; two of their gateways hit it first (not timed); then the third hits it at t0
and the clock runs until every gateway of every tenant has it from the alliance channel.

Stages: hit -> detected (the agent's hit poll), detected -> committed (ReportSightings: ingest,
decision, the promotion's claim and push committed; the RPC returns after the commit), committed ->
applied (publish, broker, verify, apply at each gateway). The plain propagation of one `ioc add`
to the same fleet is measured in the same run for comparison.

    python bench/herd_immunity.py [--agents 1000] [--tenants 100] [--rounds 5] [--workers 4]
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet_worker import Worker, commands, start_agents, start_controller, stop_all
from propagation import raise_fd_limit

from controller.simulation import OperatorApi, SimulatedAgent, percentiles, wait_until
from mssp.common.channels import ALLIANCE_CHANNEL
from mssp.v1 import common_pb2, gateway_pb2

HOST = "192.0.2.10"


# ---- worker process ----------------------------------------------------------------------------


async def worker_main() -> None:
    config = json.loads(sys.stdin.readline())
    agents = await start_agents(config)
    by_name = {a.agent.identity.label: a for a in agents}
    print(json.dumps({"ready": len(agents)}), flush=True)
    async for cmd in commands():
        if cmd["op"] == "hit":
            print(json.dumps(await timed_hit(by_name[cmd["gateway"]], cmd["value"])), flush=True)
        elif cmd["op"] == "wait":
            channel = ALLIANCE_CHANNEL if cmd["alliance"] else "global"
            print(json.dumps({"applied": await arrival_times(agents, channel, cmd["value"])}), flush=True)
    for a in agents:
        await a.stop()


async def timed_hit(sim: SimulatedAgent, value: str) -> dict[str, float]:
    """Make the kernel hit at t0; when the agent's poll found it and when the report came back."""
    done: dict[str, float] = {}
    watcher = sim.agent.hits
    real_new = watcher.new_sightings

    def detect(hits: dict[tuple[str, str], int], now: float) -> list[gateway_pb2.Sighting]:
        found = real_new(hits, now)
        if found and "detected" not in done:
            done["detected"] = time.monotonic()
        return found

    watcher.new_sightings = detect  # type: ignore[method-assign]
    watcher.on_reported = lambda _batch, at: done.setdefault("committed", at)
    backend = sim.recording()
    t0 = time.monotonic()
    backend.record_hit(value, HOST)
    await wait_until(lambda: "committed" in done, within=60, interval=0.001)
    watcher.new_sightings = real_new  # type: ignore[method-assign]
    return {"t0": t0, **done}


async def arrival_times(agents: list[SimulatedAgent], channel: str, value: str) -> list[float]:
    """When each agent first held `value` on `channel` (polled every 2 ms)."""
    key = (common_pb2.IOC_TYPE_IPV4, value)
    seen: dict[int, float] = {}

    def arrived() -> bool:
        now = time.monotonic()
        for i, a in enumerate(agents):
            ch = a.agent.state.channels.get(channel)
            if i not in seen and ch is not None and key in ch.iocs:
                seen[i] = now
        return len(seen) == len(agents)

    await wait_until(arrived, within=120, interval=0.002)
    return [seen[i] for i in range(len(agents))]


# ---- parent ------------------------------------------------------------------------------------


async def measure(n: int, tenants: int, rounds: int, workers: int, root: Path) -> dict[str, Any]:
    data_dir = root / "controller"
    controller, _ = start_controller(data_dir)
    procs: list[Worker] = []
    try:
        info = json.loads((data_dir / "controller.json").read_text())
        op = OperatorApi(info["grpc"], (data_dir / "pki" / "ca.crt").read_bytes(),
                         (data_dir / "operator.token").read_text().strip())
        names = [f"tenant-{t:03d}" for t in range(tenants)]
        for name in names:
            await op.create_tenant(name)
            await op.set_sharing(name, True)
        labels = [f"{names[i % tenants]}/gw-{i:04d}" for i in range(n)]
        tokens = [await op.add_gateway(*label.split("/")) for label in labels]
        t_enroll = time.monotonic()
        owner: dict[str, Worker] = {}
        for w in range(workers):
            chunk = list(range(w, n, workers))
            if not chunk:
                continue
            proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, start_new_session=True)
            worker = Worker(proc)
            worker.send({"controller": info["grpc"], "tokens": [tokens[i] for i in chunk],
                         "state_root": str(root / f"agents-{w}")})
            procs.append(worker)
            owner.update({labels[i]: worker for i in chunk})
        for w in procs:
            w.recv()
        enroll_s = time.monotonic() - t_enroll

        def wait_all(value: str, alliance: bool) -> list[float]:
            for w in procs:
                w.send({"op": "wait", "value": value, "alliance": alliance})
            return [t for w in procs for t in w.recv()["applied"]]  # type: ignore[union-attr]

        total: list[float] = []
        stages: dict[str, list[float]] = {"hit_to_detected": [], "detected_to_committed": [],
                                          "committed_to_applied_p99": []}
        for r in range(rounds):
            value = f"203.0.113.{r + 1}"
            three = names[(3 * r) % tenants: (3 * r) % tenants + 3]
            for name in three:
                await op.add_ioc(value, f"tenant:{name}")
            await asyncio.sleep(2.0)  # their gateways hold it (a hit needs an indicator in force)
            gateways = [next(label for label in labels if label.startswith(name + "/")) for name in three]
            for label in gateways[:2]:  # the first two organisations: a candidate, not yet promoted
                owner[label].send({"op": "hit", "gateway": label, "value": value})
                owner[label].recv()
            await asyncio.sleep(1.0)
            owner[gateways[2]].send({"op": "hit", "gateway": gateways[2], "value": value})
            hit = owner[gateways[2]].recv()
            applied = wait_all(value, alliance=True)
            t0 = float(hit["t0"])  # type: ignore[arg-type]
            total += [(t - t0) * 1000 for t in applied]
            stages["hit_to_detected"].append((float(hit["detected"]) - t0) * 1000)  # type: ignore[arg-type]
            stages["detected_to_committed"].append(
                (float(hit["committed"]) - float(hit["detected"])) * 1000)  # type: ignore[arg-type]
            after = sorted((t - float(hit["committed"])) * 1000 for t in applied)  # type: ignore[arg-type]
            stages["committed_to_applied_p99"].append(after[int(0.99 * (len(after) - 1))])
            await asyncio.sleep(1.0)
        plain: list[float] = []
        for r in range(rounds):  # the same fleet, one plain `ioc add` each round
            t0 = time.monotonic()
            await op.add_ioc(f"198.51.100.{r + 1}")
            plain += [(t - t0) * 1000 for t in wait_all(f"198.51.100.{r + 1}", alliance=False)]
            await asyncio.sleep(1.0)
        promoted = await op.sightings("promoted")
        await op.close()
        return {
            "agents": n, "tenants": tenants, "rounds": rounds, "worker_processes": len(procs),
            "enroll_and_sync_seconds": round(enroll_s, 1),
            "hit_to_applied_everywhere_ms": {k: round(v, 1) for k, v in percentiles(total).items()},
            "stages_ms_median_of_rounds": {k: round(sorted(v)[len(v) // 2], 1) for k, v in stages.items()},
            "plain_propagation_ms": {k: round(v, 1) for k, v in percentiles(plain).items()},
            "promoted": len(promoted),
        }
    finally:
        stop_all(procs, controller, worker_wait=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.worker:
        asyncio.run(worker_main())
        return
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="mssp-herd-", dir=shm if shm.is_dir() else None))
    try:
        result = asyncio.run(measure(args.agents, args.tenants, args.rounds, args.workers, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"benchmark": "herd_immunity", "cpus": os.cpu_count(), **result}, indent=2))


if __name__ == "__main__":
    main()
