"""A gateway that does not enforce part of what it was sent says so, and the operator sees it.

Real controller (in-process: embedded nats-server, SQLite, gRPC over mTLS), real agents, and
`msspctl fleet status` / `gateway show` as a subprocess against it. One agent runs the real nft
backend with dnsmasq in a network namespace of its own (root) and refuses to sinkhole the domain
its controller lives under; the other runs the real compiler with a stricter minimum prefix than
the controller's (no root needed). Either way the gateway must show as not converged, with the
reason, until the refused value is gone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.simulation import SimulatedAgent, enroll_agent, wait_until
from gateway_agent.backends.nft import NftBackend
from gateway_agent.backends.recording import RecordingBackend
from gateway_agent.dns.config import DnsSettings
from gateway_agent.nft.compile import compile_state
from gateway_agent.nft.config import NftConfig
from gateway_agent.refusals import Refusal, RefusalBook
from gateway_agent.state import DesiredState, StateChange
from mssp.common.clock import now_ms
from mssp.v1 import operator_pb2
from tests.support.controller_proc import clean_env, run_msspctl
from tests.support.fleet import RunningController
from tests.test_dnsmasq_config import free_port

NO_ROOT = ("needs root, ip, nft and dnsmasq" if os.geteuid() != 0
           or not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq")) else None)


class StrictCompilerBackend(RecordingBackend):
    """Records the state and reports what the real nft compiler refuses under a stricter config."""

    def __init__(self, directory: Path, config: NftConfig) -> None:
        super().__init__(directory)
        self.config = config
        self.book = RefusalBook()

    def apply_full(self, state: DesiredState) -> None:
        super().apply_full(state)
        self.book.replace(compile_state(state, self.config, now_ms()).rejected)

    def apply_delta(self, state: DesiredState, change: StateChange) -> None:
        self.apply_full(state)

    def refusals(self) -> tuple[Refusal, ...]:
        return self.book.current


async def gateway_status(ctl: RunningController, tenant: str, name: str) -> operator_pb2.Gateway:
    reply = await ctl.op.fleet(tenant)
    return next(g for g in reply.gateways if g.name == name)


async def until_status(ctl: RunningController, tenant: str, name: str, *, converged: bool,
                       within: float = 30.0) -> operator_pb2.Gateway:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        gw = await gateway_status(ctl, tenant, name)
        if gw.converged == converged and (converged or gw.refusals_total):
            return gw
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{tenant}/{name} never reached converged={converged}: {gw}")
        await asyncio.sleep(0.1)


async def msspctl(ctl: RunningController, *args: str) -> str:
    env = clean_env(MSSP_DATA_DIR=str(ctl.settings.data_dir), COLUMNS="250")
    proc = await asyncio.to_thread(run_msspctl, *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def check_operator_view(ctl: RunningController, tenant: str, name: str, value: str, why: str) -> None:
    gw = await until_status(ctl, tenant, name, converged=False)
    assert gw.applied == gw.desired  # in step by versions, and still not converged
    assert gw.refusals_total == 1
    assert (gw.refusals[0].kind, gw.refusals[0].value) == ("ioc", value)
    assert why in gw.refusals[0].reason
    fleet = await msspctl(ctl, "fleet", "status", "--tenant", tenant)
    assert "no (1 refused)" in fleet
    assert "1 gateways, 1 online, 0 converged" in fleet
    assert f"{tenant}/{name}" in fleet and value in fleet and why in fleet
    show = await msspctl(ctl, "gateway", "show", f"{tenant}/{name}")
    assert "refused" in show and value in show and why in show


async def test_a_compiler_refusal_shows_in_fleet_status(controller: RunningController,
                                                        tmp_path: Path) -> None:
    backend = StrictCompilerBackend(tmp_path / "rec", NftConfig(min_prefix4=25))
    await controller.op.create_tenant("acme")
    sim: SimulatedAgent = await enroll_agent(controller.op, "acme", "gw1", tmp_path / "agent",
                                             backend=backend, heartbeat_interval=1.0)
    try:
        await wait_until(sim.agent.synced.is_set)
        await until_status(controller, "acme", "gw1", converged=True)
        await controller.op.add_ioc("198.51.100.0/24")  # the controller takes /8 and longer
        await check_operator_view(controller, "acme", "gw1", "198.51.100.0/24", "prefix /25 or longer")
        await controller.op.remove_ioc("198.51.100.0/24")
        gw = await until_status(controller, "acme", "gw1", converged=True)
        assert gw.refusals_total == 0 and not gw.refusals
    finally:
        await sim.stop()


@pytest.fixture
def netns() -> Iterator[str]:
    if NO_ROOT:
        pytest.skip(NO_ROOT)
    name = f"mssp-refuse-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.mark.root
async def test_a_kernel_backend_refusal_shows_in_fleet_status(controller: RunningController, tmp_path: Path,
                                                            netns: str) -> None:
    dns = DnsSettings(directory=tmp_path / "dns", listen=("127.0.0.1",), port=free_port(), netns=netns,
                      sink_port=free_port())
    backend = NftBackend(netns=netns, dns=dns, protected_domains=["ctl.example.net"])
    await controller.op.create_tenant("acme")
    sim: SimulatedAgent | None = None
    try:
        sim = await enroll_agent(controller.op, "acme", "gw-nft", tmp_path / "agent", backend=backend,
                                 heartbeat_interval=1.0)
        await wait_until(sim.agent.synced.is_set)
        await until_status(controller, "acme", "gw-nft", converged=True)
        await controller.op.add_ioc("c2_beacon.evil.example")  # enforced: no refusal
        await controller.op.add_ioc("example.net")  # would cut the gateway off its controller
        await check_operator_view(controller, "acme", "gw-nft", "example.net", "controller/broker name")
        assert backend.dns is not None and "c2_beacon.evil.example" in backend.dns.sinkholes
        await controller.op.remove_ioc("example.net")
        gw = await until_status(controller, "acme", "gw-nft", converged=True)
        assert gw.refusals_total == 0
    finally:
        if sim is not None:
            await sim.stop()
        backend.remove()


def test_reported_refusals_are_bounded_and_inert() -> None:
    """A hostile gateway's refusal texts are stored bounded, with terminal controls escaped."""
    from controller import refusals
    from mssp.v1 import common_pb2, gateway_pb2

    hostile = common_pb2.Refusal(kind="ioc\x1b[2J", value="\x1b]0;pwned\x07" + "x" * 1000,
                                 reason="\u202eevil")
    report = gateway_pb2.StatusReport(refusals=[hostile] * 60, refusals_total=3)
    rows, total = refusals.reported(report)
    assert total == 60 and len(rows) == refusals.MAX_STORED  # the total is never below what came
    kind, value, reason = rows[0]
    assert kind.startswith("ioc\\x1b[2J") and value.startswith("\\x1b]0;pwned\\x07") and len(value) == 256
    assert reason == "\\u202eevil"
    back = refusals.decode(refusals.encode(rows))
    assert [(r.kind, r.value, r.reason) for r in back] == list(rows)
    assert refusals.decode("") == [] and refusals.decode("not json") == []
