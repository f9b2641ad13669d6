"""An agent whose state file cannot be loaded still starts, leaves what is enforced alone until a
whole new state is in, and asks the controller for a forced snapshot (real controller, gRPC, NATS;
the nft variant enforces in network namespaces)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.simulation import SimulatedAgent, enroll_agent, wait_until
from gateway_agent.backends.base import EnforcementBackend
from gateway_agent.backends.nft import NftBackend
from gateway_agent.backends.recording import RecordingBackend, read_recorded
from gateway_agent.identity import AgentIdentity
from gateway_agent.runtime import GatewayAgent
from gateway_agent.state import DesiredState, StateChange
from gateway_agent.statefile import StateFile
from mssp.v1 import common_pb2
from tests.support.fleet import RunningController
from tests.support.netns import C2, CONTROLLER, STORAGE, WEB, Topology, missing_requirements

HOLDING = "state file unusable; waiting for a full snapshot"
POLICY = """\
default_action: allow
rules:
  - name: no-storage
    action: deny
    cidrs: [198.51.100.30/32]
"""


@dataclass
class StalledSync:
    """Holds the controller's Sync until released and records each request's force_snapshot."""

    forced: list[bool] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def install(self, controller: RunningController) -> None:
        service = controller.app.service
        assert service is not None
        real = service.sync_pushes

        def sync_pushes(tenant_id: str, applied: common_pb2.Versions, *,
                        force_snapshot: bool = False, alliance: bool = False) -> list[object]:
            self.forced.append(force_snapshot)
            self.release.wait(60)
            return real(tenant_id, applied, force_snapshot=force_snapshot, alliance=alliance)

        service.sync_pushes = sync_pushes  # type: ignore[method-assign]


def corrupt_snapshot(state_dir: Path) -> None:
    snapshot = state_dir / "state" / "applied.snapshot"
    raw = bytearray(snapshot.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(raw))


async def stop_agent(controller: RunningController, sim: SimulatedAgent) -> common_pb2.Versions:
    await wait_until(lambda: sim.agent.backend.verify(sim.agent.state))  # the backend's write is done
    applied = sim.versions()
    await sim.stop()
    controller.agents.remove(sim)
    return applied


async def restart_unloadable(controller: RunningController, sim: SimulatedAgent, backend: EnforcementBackend,
                             check_kept: Callable[[], object]) -> None:
    """Restart with a corrupt snapshot; `check_kept` asserts the old enforcement, before and after."""
    applied = await stop_agent(controller, sim)
    corrupt_snapshot(sim.state_dir)
    stalled = StalledSync()
    stalled.install(controller)
    full_applies: list[common_pb2.Versions] = []
    errors_at_apply: list[str] = []  # the agent's last_error when the whole state goes in
    on_applied: list[StateChange] = []  # what the agent counts as applied (propagation metrics)
    real_apply_full = backend.apply_full

    def apply_full(state: DesiredState) -> None:
        full_applies.append(state.versions())
        errors_at_apply.append(agent.last_error)
        real_apply_full(state)

    backend.apply_full = apply_full  # type: ignore[method-assign]
    agent = GatewayAgent(AgentIdentity.load(sim.state_dir), backend, heartbeat_interval=2.0,
                         telemetry_interval=None, on_applied=lambda change, _at: on_applied.append(change))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_until(lambda: bool(stalled.forced) or task.done())
        assert not task.done(), "the agent did not start"
        assert stalled.forced[0] is True  # the first Sync asks for the whole state
        assert agent.recovery.holding and agent.state.versions() == common_pb2.Versions()
        assert full_applies == []
        assert agent.last_error.startswith(HOLDING) and agent.status()["recovering"] is True
        await check_kept()
        stalled.release.set()
        await wait_until(lambda: agent.state.versions() == applied and backend.verify(agent.state))
        assert not agent.recovery.holding
        assert full_applies == [applied]  # one apply of the whole state, never a half one
        # The snapshot held before it did not clear the reason, nor count as applied.
        assert len(errors_at_apply) == 1 and errors_at_apply[0].startswith(HOLDING)
        await wait_until(lambda: bool(on_applied))
        assert agent.push_stats.pushes_applied == 1 and [c.full for c in on_applied] == [True]
        assert agent.last_error == "" and agent.status()["recovering"] is False
        await check_kept()
        assert StateFile(sim.state_dir / "state").load(agent.identity.tenant_channel) is not None
        # Back to normal: the next change is a delta, later Syncs are not forced.
        await controller.op.add_ioc("198.51.100.21")
        await wait_until(lambda: "198.51.100.21" in {i.value for i in agent.state.live_iocs()}
                         and backend.verify(agent.state))
        assert full_applies == [applied] and not any(stalled.forced[1:])
        await wait_until(lambda: len(on_applied) > 1)
        assert agent.push_stats.pushes_applied == 2 and [c.full for c in on_applied] == [True, False]
    finally:
        stalled.release.set()
        stop.set()
        await task


async def test_unloadable_state_file_keeps_recorded_state_and_forces_a_snapshot(
    controller: RunningController,
) -> None:
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "gw0")
    await controller.op.add_ioc("198.51.100.20")
    await controller.op.set_policy("acme", POLICY)
    await wait_until(lambda: "198.51.100.20" in sim.ioc_values() and sim.agent.state.policy.version == 1)
    recording = sim.state_dir / "recording" / "desired.json"
    await wait_until(lambda: sim.agent.backend.verify(sim.agent.state))
    before = recording.read_bytes()
    backend = RecordingBackend(sim.state_dir / "recording")

    async def kept() -> None:
        if backend.applies == 0:
            assert recording.read_bytes() == before  # untouched while holding
        recorded = read_recorded(sim.state_dir / "recording")
        assert any(i["value"] == "198.51.100.20" for i in recorded["iocs"])
        assert recorded["policy"]["version"] == "1"

    await restart_unloadable(controller, sim, backend, kept)
    assert backend.deltas == 1


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    with Topology.create(tmp_path / "netns") as t:
        yield t


@pytest.mark.root
@pytest.mark.skipif(missing_requirements() is not None, reason=missing_requirements() or "")
async def test_unloadable_state_file_keeps_the_kernel_ruleset(controller: RunningController, topo: Topology,
                                                              tmp_path: Path) -> None:
    def nft() -> NftBackend:
        return NftBackend(netns=topo.gw, lan_ifaces=["lan0"], wan_ifaces=["wan0"],
                          never_block=[f"{CONTROLLER}:7443"])

    async def kept() -> None:
        reached = await asyncio.to_thread(topo.probe, [C2, STORAGE, WEB])
        assert reached == {C2: False, STORAGE: False, WEB: True}  # global IOC and tenant policy

    first = nft()
    await controller.op.create_tenant("acme")
    sim = await enroll_agent(controller.op, "acme", "gw-nft", tmp_path / "agent", backend=first,
                             heartbeat_interval=2.0)
    controller.agents.append(sim)
    try:
        await controller.op.add_ioc(C2)
        await controller.op.set_policy("acme", POLICY)
        await wait_until(lambda: C2 in sim.ioc_values() and sim.agent.state.policy.version == 1)
        await wait_until(lambda: first.verify(sim.agent.state))
        await kept()
        await restart_unloadable(controller, sim, nft(), kept)
    finally:
        await sim.stop()
        first.remove()
