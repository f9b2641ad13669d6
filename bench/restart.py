"""Controller restart: how long until every agent is back on push, and the first push's latency.

Prints JSON. The controller runs as `msspctl server run` (embedded nats-server, SQLite, every
listener on port 0, so the ports come from listen.json on the restart) in its own process; N real
agents run spread over worker processes. The controller is stopped (SIGTERM), left down for
--outage seconds and started again on the same data dir; with --move its broker comes back on
another port (MSSP_NATS_LISTEN), which the agents learn from GetBrokers. "Back" is the moment an
agent's NATS connection is up again, from the moment the restarted controller wrote controller.json
(with --move, also when it held the new URLs);
then one IOC is pushed and its latency to every agent measured (CLOCK_MONOTONIC is shared), next to
the same push made just before the restart (the floor: nothing else in its way).

    python bench/restart.py [--agents 1000] [--outage 30] [--move] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet_worker import Worker, commands, start_agents, start_controller

from controller.simulation import OperatorApi, percentiles, wait_until


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---- worker process ----------------------------------------------------------------------------


async def worker_main() -> None:
    logging.basicConfig(level=logging.ERROR)
    config = json.loads(sys.stdin.readline())
    agents = await start_agents(config)
    print(json.dumps({"ready": len(agents)}), flush=True)
    async for cmd in commands():
        if cmd["op"] == "down":  # until every agent saw the controller go
            await wait_until(lambda: not any(a.agent.nats_connected for a in agents), within=120)
            print(json.dumps({"down": True}), flush=True)
        elif cmd["op"] == "back":  # seconds from controller up to each agent's NATS connection
            back: dict[int, float] = {}
            learned: dict[int, float] = {}  # when the agent held the broker's new URLs (GetBrokers)
            deadline = time.monotonic() + cmd["within"]
            while len(back) < len(agents) and time.monotonic() < deadline:
                now = time.monotonic()
                for i, a in enumerate(agents):
                    if i not in learned and a.agent.identity.nats_urls == cmd["urls"]:
                        learned[i] = now - cmd["t_up"]
                    if i not in back and a.agent.nats_connected:
                        back[i] = now - cmd["t_up"]
                await asyncio.sleep(0.005)
            print(json.dumps({"back_s": list(back.values()), "learned_s": list(learned.values()),
                              "missing": len(agents) - len(back)}), flush=True)
        elif cmd["op"] == "wait":
            key = ("global", cmd["seq"])
            await wait_until(lambda k=key: all(k in a.applied_at for a in agents), within=120,
                             interval=0.005)
            print(json.dumps({"latencies_ms": [(a.applied_at[key] - cmd["t0"]) * 1000 for a in agents]}),
                  flush=True)
    for a in agents:
        await a.stop()


# ---- parent ------------------------------------------------------------------------------------


def stop_controller(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def push_latencies(op: OperatorApi, procs: list[Worker], value: str) -> tuple[list[float], float]:
    """One `ioc add`: ms from just before the call to each agent's apply, and the call's own ms."""
    t0 = time.monotonic()
    ioc = await op.add_ioc(value)
    add_ms = (time.monotonic() - t0) * 1000
    for w in procs:
        w.send({"op": "wait", "seq": ioc.seq, "t0": t0})
    return [x for w in procs for x in w.recv()["latencies_ms"]], add_ms  # type: ignore[union-attr]


async def measure(n: int, outage: float, move: bool, workers: int, root: Path) -> dict[str, object]:
    data_dir = root / "controller"
    controller, _ = start_controller(data_dir, {"MSSP_NATS_LISTEN": "127.0.0.1:0"})
    procs: list[Worker] = []
    try:
        info = json.loads((data_dir / "controller.json").read_text())
        ca_pem = (data_dir / "pki" / "ca.crt").read_bytes()
        token = (data_dir / "operator.token").read_text().strip()
        op = OperatorApi(info["grpc"], ca_pem, token)
        tenants = max(1, n // 50)
        for t in range(tenants):
            await op.create_tenant(f"tenant-{t:03d}")
        tokens = [await op.add_gateway(f"tenant-{i % tenants:03d}", f"gw-{i:04d}") for i in range(n)]
        for w, chunk in enumerate(tokens[i::workers] for i in range(workers)):
            if not chunk:
                continue
            proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, start_new_session=True)
            worker = Worker(proc)
            worker.send({"controller": info["grpc"], "tokens": chunk,
                         "state_root": str(root / f"agents-{w}")})
            procs.append(worker)
        for w in procs:
            w.recv()
        await asyncio.sleep(3)  # the fleet's first reports and telemetry settle
        before = await push_latencies(op, procs, "198.51.100.2")  # the same push with nothing in its way
        await op.close()
        stop_controller(controller)
        for w in procs:
            w.send({"op": "down"})
        for w in procs:
            w.recv()
        await asyncio.sleep(outage)
        env = {"MSSP_NATS_LISTEN": f"127.0.0.1:{free_port()}" if move else "127.0.0.1:0"}
        controller, t_up = start_controller(data_dir, env)
        after = json.loads((data_dir / "controller.json").read_text())
        for w in procs:
            w.send({"op": "back", "t_up": t_up, "within": 120, "urls": after["nats_urls"]})
        backs = [w.recv() for w in procs]
        back = [x for b in backs for x in b["back_s"]]  # type: ignore[union-attr]
        learned = [x for b in backs for x in b["learned_s"]]  # type: ignore[union-attr]
        op = OperatorApi(after["grpc"], ca_pem, token)
        latencies, add_ms = await push_latencies(op, procs, "198.51.100.1")
        await op.close()
        return {
            "agents": n,
            "outage_seconds": outage,
            "broker_moved": move,
            "same_addresses": (after["grpc"], after["gateway"]) == (info["grpc"], info["gateway"]),
            "nats_urls": {"before": info["nats_urls"], "after": after["nats_urls"]},
            "worker_processes": len(procs),
            "not_back": sum(int(b["missing"]) for b in backs),  # type: ignore[call-overload]
            "back_on_push_s": {k: round(v, 3) for k, v in percentiles(back).items()},
            "broker_urls_learned_s": {k: round(v, 3) for k, v in percentiles(learned).items()}
            if move and learned else None,
            "first_push_latency_ms": {k: round(v, 1) for k, v in percentiles(latencies).items()},
            "of_which_add_ioc_call_ms": round(add_ms, 1),  # the operator's call, answered once committed
            "push_before_restart_ms": {k: round(v, 1) for k, v in percentiles(before[0]).items()},
            "before_add_ioc_call_ms": round(before[1], 1),
        }
    finally:
        for w in procs:
            with contextlib.suppress(Exception):
                w.send({"op": "stop"})
        for w in procs:
            try:
                w.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(w.proc.pid, signal.SIGKILL)
        if controller.poll() is None:
            stop_controller(controller)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the controller stays down")
    parser.add_argument("--move", action="store_true", help="the broker comes back on another port")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.worker:
        asyncio.run(worker_main())
        return
    root = Path(tempfile.mkdtemp(prefix="mssp-bench-restart-"))
    try:
        result = asyncio.run(measure(args.agents, args.outage, args.move, args.workers, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
