"""A rolling upgrade leaves old agents talking to a new controller for a while. The agent of the
commit in tests/fixtures/previous_agent_commit (the last release's, or the previous landed commit's)
is taken out of git and run as its own process against this controller for the core flows: enroll,
push, resync after an outage, status reports, telemetry. A key rotation, which that agent could
not follow, is refused while it is enrolled, and so is a CA rollover."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controller.simulation import wait_until
from mssp.v1 import operator_pb2
from tests.support.fleet import RunningController

ROOT = Path(__file__).resolve().parent.parent
PREVIOUS = (ROOT / "tests" / "fixtures" / "previous_agent_commit").read_text().split()[0]
WAIT = 30.0


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False, timeout=60)


@pytest.fixture(scope="module")
def previous_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The previous agent's source tree (gateway_agent and the generated wire code), from git."""
    if not (ROOT / ".git").exists() or _git("cat-file", "-e", f"{PREVIOUS}^{{commit}}").returncode:
        pytest.skip(f"commit {PREVIOUS} is not in this checkout (a shallow clone or a source tarball)")
    tree = tmp_path_factory.mktemp("previous-agent")
    archive = _git("archive", "--format=tar", PREVIOUS, "gateway_agent", "protos/mssp")
    assert archive.returncode == 0, archive.stderr.decode()
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True, timeout=60)
    yield tree


class OldAgent:
    def __init__(self, tree: Path, state_dir: Path) -> None:
        self.tree, self.state_dir = tree, state_dir
        self.env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'protos'}"}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = state_dir.parent / f"{state_dir.name}.log"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-B", "-m", "gateway_agent.cli", *args]

    async def enroll(self, address: str, token: str) -> None:
        done = await asyncio.to_thread(
            subprocess.run, self.command("enroll", "--controller", address, "--token", token,
                                         "--state-dir", str(self.state_dir)),
            cwd=self.tree, env=self.env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command("run", "--state-dir", str(self.state_dir), "--backend", "recording",
                             "--heartbeat", "1"), cwd=self.tree, env=self.env, stdout=log, stderr=log)

    async def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, 20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 20)

    def iocs(self) -> set[str]:
        try:
            recorded = json.loads((self.state_dir / "recording" / "desired.json").read_text())
        except (OSError, ValueError):
            return set()
        return {i["value"] for i in recorded["iocs"]}


async def test_previous_agent_against_this_controller(
    controller: RunningController, previous_agent: Path, tmp_path: Path
) -> None:
    op = controller.op
    await op.create_tenant("acme")
    old = OldAgent(previous_agent, tmp_path / "old-agent")
    try:
        await old.enroll(op.address, await op.add_gateway("acme", "old"))
        old.start()
        await op.add_ioc("198.51.100.21")
        await wait_until(lambda: "198.51.100.21" in old.iocs(), within=WAIT)

        async def converged() -> bool:
            (gw,) = (await op.fleet("acme")).gateways
            return gw.converged and gw.online

        deadline = asyncio.get_running_loop().time() + WAIT
        while not await converged():  # its status reports reach the controller
            assert asyncio.get_running_loop().time() < deadline, old.log.read_text()[-3000:]
            await asyncio.sleep(0.3)

        # It trusts one signing key: a rotation would cut it off, so it is refused.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await op.call("RotateSigningKey", operator_pb2.RotateSigningKeyRequest())
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "acme/old" in (refused.value.details() or "")
        # Nor can it follow a CA rollover (it never takes a CA bundle): refused too.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await op.call("RolloverCa", operator_pb2.RolloverCaRequest())
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "acme/old" in (refused.value.details() or "")

        # An outage: what changed meanwhile arrives by resync when it is back.
        await old.stop()
        await op.add_ioc("198.51.100.22")
        await op.remove_ioc("198.51.100.21")
        old.start()
        await wait_until(lambda: old.iocs() == {"198.51.100.22"}, within=WAIT)

        # Telemetry: its batches are taken by this controller's consumer (the first within 45 s).
        await wait_until(lambda: controller.app.telemetry is not None
                         and controller.app.telemetry.stats.received > 0, within=90)
        assert old.process is not None and old.process.poll() is None, old.log.read_text()[-3000:]
    finally:
        await old.stop()
