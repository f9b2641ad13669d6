"""Real agents run in-process: the demo, the benchmarks and the tests use these.

Each simulated agent is a complete GatewayAgent with its own keys, certificate, NATS connection
and credentials; only the enforcement backend is the recording one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gateway_agent.backends.base import EnforcementBackend, WrappedBackend
from gateway_agent.backends.recording import RecordingBackend
from gateway_agent.clock import AgentClock
from gateway_agent.enroll import enroll
from gateway_agent.runtime import GatewayAgent
from gateway_agent.state import StateChange
from mssp.v1 import common_pb2, intel_pb2, intel_pb2_grpc, operator_pb2, operator_pb2_grpc

CALL_TIMEOUT = 30.0


class OperatorApi:
    """Async operator client with the credential and a deadline on every call."""

    def __init__(self, address: str, ca_pem: bytes, token: str) -> None:
        self.address = address
        creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
        self._channel = grpc.aio.secure_channel(address, creds)
        self.stub = operator_pb2_grpc.OperatorServiceStub(self._channel)
        self.intel = intel_pb2_grpc.IntelServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)

    async def call(self, method: str, request: Any) -> Any:
        return await getattr(self.stub, method)(request, metadata=self._metadata, timeout=CALL_TIMEOUT)

    async def sightings(self, state: str = "") -> list[intel_pb2.SightingInfo]:
        request = intel_pb2.ListSightingsRequest(state=state)
        reply = await self.intel.ListSightings(request, metadata=self._metadata, timeout=CALL_TIMEOUT)
        return list(reply.sightings)

    async def create_tenant(self, name: str) -> operator_pb2.Tenant:
        return await self.call("CreateTenant", operator_pb2.CreateTenantRequest(name=name))

    async def set_sharing(self, tenant: str, sharing: bool) -> operator_pb2.Tenant:
        request = operator_pb2.SetTenantSharingRequest(name=tenant, sharing=sharing)
        return await self.call("SetTenantSharing", request)

    async def add_gateway(self, tenant: str, name: str) -> str:
        reply = await self.call("AddGateway", operator_pb2.AddGatewayRequest(tenant=tenant, name=name))
        return reply.enrollment_token

    async def set_policy(self, tenant: str, yaml_text: str) -> operator_pb2.PolicyInfo:
        return await self.call("SetPolicy", operator_pb2.SetPolicyRequest(tenant=tenant, yaml=yaml_text))

    async def add_ioc(self, value: str, scope: str = "global", ttl_seconds: int = 0) -> operator_pb2.IocInfo:
        return await self.call(
            "AddIoc", operator_pb2.AddIocRequest(value=value, scope=scope, ttl_seconds=ttl_seconds)
        )

    async def remove_ioc(self, value: str, scope: str = "global") -> operator_pb2.RemoveIocResponse:
        return await self.call("RemoveIoc", operator_pb2.RemoveIocRequest(value=value, scope=scope))

    async def fleet(self, tenant: str = "") -> operator_pb2.FleetStatusResponse:
        return await self.call("FleetStatus", operator_pb2.FleetStatusRequest(tenant=tenant))

    async def close(self) -> None:
        await self._channel.close()


@dataclass
class SimulatedAgent:
    agent: GatewayAgent
    state_dir: Path
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    applied_at: dict[tuple[str, int], float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.agent.identity.label

    def start(self) -> None:
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(self.agent.run(self.stop_event), name=f"agent {self.label}")

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def versions(self) -> common_pb2.Versions:
        return self.agent.state.versions()

    def recording(self) -> RecordingBackend:
        """The recording backend under the agent's wrappers (exemptions, budget): where a simulation
        makes its kernel hits."""
        backend = self.agent.backend
        while isinstance(backend, WrappedBackend):
            backend = backend.inner
        if not isinstance(backend, RecordingBackend):
            raise TypeError(f"{self.label} does not run the recording backend")
        return backend

    def ioc_values(self) -> set[str]:
        return {ioc.value for ioc in self.agent.state.live_iocs()}


async def enroll_agent(
    op: OperatorApi,
    tenant: str,
    name: str,
    state_dir: Path,
    *,
    heartbeat_interval: float = 30.0,
    start: bool = True,
    backend: EnforcementBackend | None = None,
    clock: AgentClock | None = None,
) -> SimulatedAgent:
    token = await op.add_gateway(tenant, name)
    identity = await enroll(op.address, token, state_dir)
    holder: dict[str, SimulatedAgent] = {}

    def on_applied(change: StateChange, at: float) -> None:
        holder["sim"].applied_at[(change.channel, change.seq)] = at

    agent = GatewayAgent(
        identity,
        backend or RecordingBackend(state_dir / "recording"),
        heartbeat_interval=heartbeat_interval,
        on_applied=on_applied,
        clock=clock,
    )
    sim = SimulatedAgent(agent=agent, state_dir=state_dir)
    holder["sim"] = sim
    if start:
        sim.start()
    return sim


async def wait_until(predicate: Callable[[], bool], within: float = 30.0, interval: float = 0.02) -> float:
    """Seconds it took for predicate() to hold; TimeoutError if it never did."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max by nearest rank (no interpolation: every figure is a measured value)."""
    ordered = sorted(values)
    if not ordered:
        return {}

    def rank(p: float) -> float:
        return ordered[max(0, min(len(ordered), math.ceil(p * len(ordered))) - 1)]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}
