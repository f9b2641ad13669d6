"""The whole path with the kernel at the end: `ioc add` / `policy set` at the controller -> signed
push over NATS -> the agent's nft backend in a gateway namespace -> real connections from a LAN
namespace blocked or passing. The agent's control plane runs on loopback (root namespace); its
ruleset lives in the gateway namespace of tests/support/netns.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.simulation import SimulatedAgent, enroll_agent, wait_until
from gateway_agent.backends.nft import NftBackend
from mssp.v1 import operator_pb2
from tests.support.fleet import RunningController
from tests.support.netns import C2, CONTROLLER, LAN_HOST, WEB, Topology, missing_requirements

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(missing_requirements() is not None, reason=missing_requirements() or ""),
]

DENY_ALL_BUT_WEB = f"""\
default_action: deny
rules:
  - name: web
    action: allow
    cidrs: [{WEB}/32]
    protocol: tcp
    ports: [80]
"""


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with Topology.create(tmp_path_factory.mktemp("netns-e2e")) as t:
        yield t


async def reaches(topo: Topology, target: str) -> bool:
    return (await asyncio.to_thread(topo.probe, [target]))[target]


async def until_reach(topo: Topology, target: str, expected: bool, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while await reaches(topo, target) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{target} reachable={not expected}, wanted {expected}")
        await asyncio.sleep(0.1)


async def test_operator_changes_reach_the_kernel(controller: RunningController, topo: Topology,
                                                 tmp_path: Path) -> None:
    backend = NftBackend(netns=topo.gw, lan_ifaces=["lan0"], wan_ifaces=["wan0"],
                         never_block=[f"{CONTROLLER}:7443"])
    await controller.op.create_tenant("acme")
    sim: SimulatedAgent | None = None
    try:
        sim = await enroll_agent(controller.op, "acme", "gw-nft", tmp_path / "agent", backend=backend,
                                 heartbeat_interval=2.0)
        await wait_until(sim.agent.synced.is_set)
        assert await reaches(topo, C2) and await reaches(topo, WEB)

        await controller.op.add_ioc(C2)  # global: herd immunity reaches acme's router
        await until_reach(topo, C2, False)
        assert await reaches(topo, WEB)

        await controller.op.remove_ioc(C2)
        await until_reach(topo, C2, True)

        await controller.op.set_policy("acme", DENY_ALL_BUT_WEB)
        await until_reach(topo, C2, False)
        assert await reaches(topo, WEB)

        # The agent gone: the kernel keeps enforcing the last state (fail-static).
        assert sim.task is not None
        sim.task.cancel()
        await asyncio.sleep(0.2)
        assert not await reaches(topo, C2) and await reaches(topo, WEB)
    finally:
        if sim is not None:
            await sim.stop()
        backend.remove()


async def test_a_kernel_hit_becomes_a_sighting_and_protects_the_alliance(
    controller: RunningController, topo: Topology, tmp_path: Path
) -> None:
    """The agent reads the kernel's hit set, reports the LAN host at once, and the fast tier promotes a
    tenant's own high-confidence indicator on that one hit: the other tenant's gateway enforces it."""
    backend = NftBackend(netns=topo.gw, lan_ifaces=["lan0"], wan_ifaces=["wan0"],
                         never_block=[f"{CONTROLLER}:7443"])
    for name in ("acme", "globex"):
        await controller.op.create_tenant(name)
        await controller.op.set_sharing(name, True)
    sim: SimulatedAgent | None = None
    try:
        sim = await enroll_agent(controller.op, "acme", "gw-nft", tmp_path / "agent", backend=backend,
                                 heartbeat_interval=2.0)
        other = await controller.enroll("globex", "gw0")
        await wait_until(sim.agent.synced.is_set)
        await controller.op.call("AddIoc", operator_pb2.AddIocRequest(
            value=C2, scope="tenant:acme", confidence=95, has_confidence=True))
        await until_reach(topo, C2, False)  # the probe's packets are the hit
        await wait_until(lambda: C2 in other.ioc_values(), within=20)
        (promoted,) = await controller.op.sightings("promoted")
        assert (promoted.value, promoted.scope, promoted.decided_by) == (C2, "alliance", "policy")
        assert [(w.tenant, w.gateway, w.host, w.via) for w in promoted.seen_at] == [
            ("acme", "gw-nft", LAN_HOST, "firewall")]
        assert promoted.seen_at[0].count >= 1
    finally:
        if sim is not None:
            await sim.stop()
        backend.remove()
