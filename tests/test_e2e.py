"""End to end over real gRPC (mTLS) and a real nats-server: enroll, push, converge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.msg import Msg

from controller.simulation import SimulatedAgent, wait_until
from gateway_agent.backends.recording import RecordingBackend, read_recorded
from gateway_agent.identity import AgentIdentity
from gateway_agent.runtime import GatewayAgent
from mssp.common.channels import channel_subject, tenant_channel
from mssp.common.envelope import sign_push
from mssp.v1 import common_pb2, gateway_pb2, operator_pb2, push_pb2
from tests.support.fleet import RunningController

Predicate = Callable[[SimulatedAgent], bool]

POLICY = """\
default_action: deny
rules:
  - name: web
    action: allow
    cidrs: [203.0.113.0/24]
    protocol: tcp
    ports: [443]
"""


def has_ioc(*values: str) -> Predicate:
    def check(sim: SimulatedAgent) -> bool:
        return set(values) <= sim.ioc_values()

    return check


async def converge(agents: list[SimulatedAgent], predicate: Predicate, within: float = 20.0) -> None:
    await wait_until(lambda: all(predicate(a) for a in agents), within=within)


async def two_tenants(ctl: RunningController, per_tenant: int = 2) -> dict[str, list[SimulatedAgent]]:
    fleet: dict[str, list[SimulatedAgent]] = {}
    for tenant in ("acme", "globex"):
        await ctl.op.create_tenant(tenant)
        fleet[tenant] = [await ctl.enroll(tenant, f"gw{i}") for i in range(per_tenant)]
    everyone = [a for agents in fleet.values() for a in agents]
    await wait_until(lambda: all(a.agent.synced.is_set() for a in everyone))
    return fleet


async def test_global_ioc_reaches_every_tenant_and_fleet_converges(controller: RunningController) -> None:
    fleet = await two_tenants(controller)
    everyone = fleet["acme"] + fleet["globex"]
    info = await controller.op.add_ioc("198.51.100.7")
    assert info.seq == 1
    await converge(everyone, has_ioc("198.51.100.7"))
    for sim in everyone:
        path = sim.state_dir / "recording" / "desired.json"
        await wait_until(lambda p=path: p.exists() and "198.51.100.7" in p.read_text())  # written after
        recorded = read_recorded(sim.state_dir / "recording")
        assert {"type": "IOC_TYPE_IPV4", "value": "198.51.100.7", "expires_at_ms": 0} in recorded["iocs"]

    for _ in range(200):
        status = await controller.op.fleet()
        if status.converged == 4:
            break
        await asyncio.sleep(0.05)
    assert status.total == 4 and status.online == 4 and status.converged == 4
    assert all(g.applied.global_seq == 1 and g.desired.global_seq == 1 for g in status.gateways)


async def test_tenant_ioc_and_policy_never_reach_another_tenant(controller: RunningController) -> None:
    fleet = await two_tenants(controller)
    acme, globex = fleet["acme"], fleet["globex"]
    await controller.op.add_ioc("evil.example.com", scope="tenant:acme")
    await controller.op.set_policy("acme", POLICY)
    await converge(acme, lambda a: "evil.example.com" in a.ioc_values() and a.agent.state.policy.version == 1)
    # A later global push is a marker: once globex has it, anything for globex would have arrived too.
    await controller.op.add_ioc("203.0.113.99")
    await converge(acme + globex, has_ioc("203.0.113.99"))
    for sim in globex:
        recorded = sim.state_dir / "recording" / "desired.json"
        # The in-memory state moves first; the backend's write follows in a thread.
        await wait_until(lambda r=recorded: r.exists() and "203.0.113.99" in r.read_text())
        assert "evil.example.com" not in sim.ioc_values()
        assert sim.agent.state.policy.version == 0
        assert "evil.example.com" not in recorded.read_text()
    policy = acme[0].agent.state.policy
    assert policy.default_action == common_pb2.ACTION_DENY
    assert [r.name for r in policy.rules] == ["web"]


async def test_ioc_removal_and_policy_change_propagate(controller: RunningController) -> None:
    await controller.op.create_tenant("acme")
    agents = [await controller.enroll("acme", f"gw{i}") for i in range(2)]
    await controller.op.add_ioc("2001:db8::66", scope="tenant:acme")
    await converge(agents, has_ioc("2001:db8::66"))
    await controller.op.remove_ioc("2001:db8::66", scope="tenant:acme")
    await converge(agents, lambda a: "2001:db8::66" not in a.ioc_values())
    await controller.op.set_policy("acme", POLICY)
    await converge(agents, lambda a: a.agent.state.policy.version == 1)
    versions = agents[0].versions()
    assert versions.tenant_seq == 3


async def test_forged_and_replayed_pushes_are_rejected(controller: RunningController) -> None:
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "gw0")
    await wait_until(sim.agent.synced.is_set)
    nc = controller.app.nc
    assert nc is not None
    captured: list[bytes] = []

    async def capture(msg: Msg) -> None:
        captured.append(msg.data)

    sub = await nc.subscribe(channel_subject("global"), cb=capture)
    await controller.op.add_ioc("198.51.100.1")
    await converge([sim], has_ioc("198.51.100.1"))
    await controller.op.add_ioc("198.51.100.2")
    await converge([sim], has_ioc("198.51.100.2"))
    await sub.unsubscribe()
    before = sim.versions()

    # Forged: a well-formed push for the next seq, signed by a key that is not the controller's.
    forged = push_pb2.Push(channel="global", seq=before.global_seq + 1,
                           iocs=push_pb2.IocDelta(upsert=[common_pb2.Ioc(type=common_pb2.IOC_TYPE_IPV4,
                                                                         value="192.0.2.66")]))
    await nc.publish(channel_subject("global"), sign_push(Ed25519PrivateKey.generate(), forged)
                     .SerializeToString())
    # Garbage bytes on the tenant subject.
    await nc.publish(channel_subject(tenant_channel(sim.agent.identity.tenant_id)), b"\x00garbage{;}")
    await wait_until(lambda: sim.agent.push_stats.rejected >= 2)
    assert "192.0.2.66" not in sim.ioc_values()

    # Replayed: a genuine, correctly signed, older push.
    first_ioc_push = next(d for d in captured if b"198.51.100.1" in d)
    stale_before = sim.agent.push_stats.stale
    await nc.publish(channel_subject("global"), first_ioc_push)
    await wait_until(lambda: sim.agent.push_stats.stale > stale_before)
    assert sim.versions() == before
    assert sim.ioc_values() >= {"198.51.100.1", "198.51.100.2"}


async def test_agent_converges_after_broker_outage(controller: RunningController) -> None:
    await controller.op.create_tenant("acme")
    agents = [await controller.enroll("acme", f"gw{i}") for i in range(2)]
    await wait_until(lambda: all(a.agent.synced.is_set() for a in agents))
    embedded = controller.app.embedded_nats
    assert embedded is not None
    await embedded.stop()
    # Pushes while the broker is down: committed, not deliverable.
    await controller.op.add_ioc("198.51.100.10")
    await controller.op.add_ioc("198.51.100.11", scope="tenant:acme")
    await controller.op.set_policy("acme", POLICY)
    await asyncio.sleep(0.5)
    assert all("198.51.100.10" not in a.ioc_values() for a in agents)
    await embedded.restart()
    await converge(agents, lambda a: has_ioc("198.51.100.10", "198.51.100.11")(a)
                   and a.agent.state.policy.version == 1, within=45)


async def test_restarted_agent_keeps_enforcing_without_controller(controller: RunningController) -> None:
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "gw0")
    await controller.op.add_ioc("198.51.100.20")
    await controller.op.set_policy("acme", POLICY)
    tenant = sim.agent.identity.tenant_channel
    # applied_at is written after the backend applied a push and the state file saved it (the state
    # moves in memory first: a stop in between leaves the push to the next resync, by design).
    await converge([sim], lambda a: "198.51.100.20" in a.ioc_values() and (tenant, 1) in a.applied_at)
    applied = sim.versions()
    await sim.stop()
    controller.agents.remove(sim)
    await controller.app.stop()

    recording = sim.state_dir / "recording" / "desired.json"
    recording.unlink()  # prove the restart re-enforces from its own state, not a leftover file
    agent = GatewayAgent(AgentIdentity.load(sim.state_dir), RecordingBackend(sim.state_dir / "recording"))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_until(recording.exists)
        assert agent.state.versions() == applied
        recorded = read_recorded(sim.state_dir / "recording")
        assert any(i["value"] == "198.51.100.20" for i in recorded["iocs"])
        assert recorded["policy"]["version"] == "1"
    finally:
        stop.set()
        await task


async def test_revoked_gateway_is_refused(controller: RunningController) -> None:
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "gw0")
    await wait_until(sim.agent.synced.is_set)
    assert await sim.agent.report() is not None
    await controller.op.call("RevokeGateway", operator_pb2.GatewayRef(tenant="acme", name="gw0"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        assert sim.agent._stub is not None
        await sim.agent._stub.ReportStatus(gateway_pb2.StatusReport(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (err.value.details() or "")
