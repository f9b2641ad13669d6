"""What bench/propagation.py and bench/restart.py share: worker processes that each enroll and run
a slice of the simulated fleet, driven over stdin/stdout with one JSON object per line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from controller.simulation import SimulatedAgent, wait_until
from gateway_agent.backends.recording import RecordingBackend
from gateway_agent.enroll import enroll
from gateway_agent.runtime import GatewayAgent
from gateway_agent.state import StateChange


async def start_agents(config: dict[str, Any]) -> list[SimulatedAgent]:
    """Enroll one agent per token (16 at a time), start them, wait until all are synced on NATS."""
    agents: list[SimulatedAgent] = []
    sem = asyncio.Semaphore(16)

    async def start_one(token: str, index: int) -> None:
        state_dir = Path(config["state_root"]) / f"agent-{index}"
        async with sem:
            identity = await enroll(config["controller"], token, state_dir)
        holder: dict[str, SimulatedAgent] = {}

        def on_applied(change: StateChange, at: float) -> None:
            holder["sim"].applied_at[(change.channel, change.seq)] = at

        agent = GatewayAgent(identity, RecordingBackend(state_dir / "recording"),
                             heartbeat_interval=300.0, on_applied=on_applied)
        sim = SimulatedAgent(agent=agent, state_dir=state_dir)
        holder["sim"] = sim
        sim.start()
        agents.append(sim)

    await asyncio.gather(*(start_one(t, i) for i, t in enumerate(config["tokens"])))
    await wait_until(lambda: all(a.agent.synced.is_set() and a.agent.nats_connected for a in agents),
                     within=300)
    return agents


async def commands() -> AsyncIterator[dict[str, Any]]:
    """The parent's commands from stdin, until "stop" or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        cmd = json.loads(line)
        if cmd["op"] == "stop":
            return
        yield cmd


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def send(self, obj: dict[str, object]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def recv(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.pid} exited")
        return json.loads(line)


def start_controller(
    data_dir: Path, env_extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], float]:
    """The controller process and the monotonic time it was up (controller.json written)."""
    msspctl = Path(sys.executable).parent / "msspctl"
    env = {**os.environ, "MSSP_LOG_LEVEL": "WARNING", **(env_extra or {})}
    proc = subprocess.Popen(
        [str(msspctl), "server", "run", "--data-dir", str(data_dir), "--grpc-listen", "127.0.0.1:0",
         "--gateway-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (data_dir / "controller.json").exists():
        if proc.poll() is not None:
            raise RuntimeError(f"controller exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise RuntimeError("controller did not start within 60s")
        time.sleep(0.01)
    return proc, time.monotonic()


def stop_all(workers: list[Worker], controller: subprocess.Popen[bytes], *, worker_wait: float) -> None:
    """Stop the worker processes, then the controller; whatever does not stop in time is killed."""
    for w in workers:
        with contextlib.suppress(Exception):
            w.send({"op": "stop"})
    for w in workers:
        try:
            w.proc.wait(timeout=worker_wait)
        except subprocess.TimeoutExpired:
            os.killpg(w.proc.pid, signal.SIGKILL)
    controller.send_signal(signal.SIGTERM)
    try:
        controller.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(controller.pid, signal.SIGKILL)
