"""ProvisioningService: provisioning runs streamed host by host (msspctl gateway provision,
upgrade, decommission). The run itself is blocking Ansible work in a worker thread
(controller/provisioning/service.py); its progress crosses to the event loop through a queue."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc

from controller.domain.errors import Conflict, InvalidInput
from controller.grpc_api.access import OperatorCalls, authenticate_operator
from controller.grpc_api.errors import maps_domain_errors
from controller.operators import acting
from controller.provisioning.bundle import BundleError, load
from controller.provisioning.records import RunRecord
from controller.provisioning.runner import HostOutcome
from controller.provisioning.service import (
    OnHost,
    Provisioner,
    RunOptions,
    RunResult,
    SshAccess,
    enforcement_from_json,
)
from controller.provisioning.targets import parse_jump, target
from controller.service import ControllerService
from mssp.v1 import operator_pb2, provisioning_pb2, provisioning_pb2_grpc

Ctx = grpc.aio.ServicerContext
Start = Callable[[OnHost, Callable[[], bool]], RunResult]


def host_progress(o: HostOutcome) -> provisioning_pb2.HostProgress:
    return provisioning_pb2.HostProgress(
        gateway=o.gateway, host=o.host, state=o.state, ok=o.ok, changed=o.changed, task=o.task,
        message=o.message, seconds=round(o.seconds, 3), phases={k: round(v, 3) for k, v in o.phases.items()})


def summary(r: RunRecord) -> provisioning_pb2.RunSummary:
    return provisioning_pb2.RunSummary(
        id=r.id, kind=r.kind, tenant=r.tenant, operator=r.operator, agent_version=r.agent_version,
        status=r.status, started_at_ms=r.started_at_ms, finished_at_ms=r.finished_at_ms,
        hosts=[host_progress(h) for h in r.hosts])


def access_of(m: provisioning_pb2.SshAccess) -> SshAccess:
    return SshAccess(private_key=m.private_key, become=m.become, jump=parse_jump(m.jump))


def options_of(m: provisioning_pb2.RunOptions, batch: str = "1", *, bundle_needed: bool = True) -> RunOptions:
    bundle = None
    if m.bundle_dir or bundle_needed:
        if not m.bundle_dir:
            raise InvalidInput("no agent bundle given: build one with `msspctl agent bundle --out DIR`")
        try:
            bundle = load(Path(m.bundle_dir))
        except BundleError as exc:
            raise InvalidInput(str(exc)) from None
    return RunOptions(bundle=bundle, enforcement=enforcement_from_json(m.router_options_json),
                      service_manager=m.service_manager or "auto", wait_seconds=m.wait_seconds or 180,
                      batch=batch or "1")


class ProvisioningServicer(OperatorCalls, provisioning_pb2_grpc.ProvisioningServiceServicer):
    def __init__(self, service: ControllerService, operator_token_digest: bytes, provisioner: Provisioner,
                 on_revoke: Callable[[str], Awaitable[None]]) -> None:
        super().__init__(service, operator_token_digest)
        self.provisioner = provisioner
        self.on_revoke = on_revoke

    @maps_domain_errors
    async def Provision(self, request: provisioning_pb2.ProvisionRequest,
                        context: Ctx) -> AsyncIterator[provisioning_pb2.ProvisionEvent]:
        targets = [target(h.name, h.host, h.port or 22, h.user or "root", h.prefix or "/opt/mssp-agent")
                   for h in request.hosts]
        access, options = access_of(request.ssh), options_of(request.options)

        def start(on_host: OnHost, cancelled: Callable[[], bool]) -> RunResult:
            return self.provisioner.provision(request.tenant, targets, access, options, operator=_operator(),
                                              on_host=on_host, cancelled=cancelled)

        async for event in self._stream(context, start):
            yield event

    @maps_domain_errors
    async def Upgrade(self, request: provisioning_pb2.UpgradeRequest,
                      context: Ctx) -> AsyncIterator[provisioning_pb2.ProvisionEvent]:
        access, options = access_of(request.ssh), options_of(request.options, request.batch)
        names = list(request.gateways) or None

        def start(on_host: OnHost, cancelled: Callable[[], bool]) -> RunResult:
            return self.provisioner.upgrade(request.tenant, names, access, options, operator=_operator(),
                                            on_host=on_host, cancelled=cancelled)

        async for event in self._stream(context, start):
            yield event

    @maps_domain_errors
    async def Decommission(self, request: provisioning_pb2.DecommissionRequest,
                           context: Ctx) -> AsyncIterator[provisioning_pb2.ProvisionEvent]:
        access, options = access_of(request.ssh), options_of(request.options, bundle_needed=False)

        def start(on_host: OnHost, cancelled: Callable[[], bool]) -> RunResult:
            return self.provisioner.decommission(request.tenant, request.name, access, options,
                                                 operator=_operator(), on_host=on_host, cancelled=cancelled)

        async for event in self._stream(context, start, revoke=(request.tenant, request.name)):
            yield event

    @maps_domain_errors
    async def ListProvisionRuns(self, request: provisioning_pb2.ListProvisionRunsRequest,
                                context: Ctx) -> provisioning_pb2.ListProvisionRunsResponse:
        runs = await self._call(context, self.provisioner.records.list_runs, request.tenant,
                                request.limit or 20)
        return provisioning_pb2.ListProvisionRunsResponse(runs=[summary(r) for r in runs])

    @maps_domain_errors
    async def ForgetHostKey(self, request: operator_pb2.GatewayRef,
                            context: Ctx) -> provisioning_pb2.ForgetHostKeyResponse:
        old = await self._call(context, self.provisioner.records.forget_host_key, request.tenant,
                               request.name)
        return provisioning_pb2.ForgetHostKeyResponse(fingerprint=old)

    async def _stream(self, context: Ctx, start: Start, revoke: tuple[str, str] | None = None,
                      ) -> AsyncIterator[provisioning_pb2.ProvisionEvent]:
        authenticate_operator(context, self._digest)
        loop = asyncio.get_running_loop()
        progress: asyncio.Queue[HostOutcome] = asyncio.Queue()
        stop = threading.Event()  # the caller went away: ansible-runner cancels the playbook
        run = asyncio.ensure_future(asyncio.to_thread(
            start, lambda o: loop.call_soon_threadsafe(progress.put_nowait, o), stop.is_set))
        try:
            while not run.done() or not progress.empty():
                getter = asyncio.ensure_future(progress.get())
                await asyncio.wait({getter, run}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield provisioning_pb2.ProvisionEvent(host=host_progress(getter.result()))
                else:
                    getter.cancel()
            result = await run
        finally:
            stop.set()
        if revoke is not None and result.status == "ok":
            await self._revoke(*revoke)
        record = await asyncio.to_thread(self.provisioner.records.get_run, result.run_id)
        done = summary(record)
        if result.hosts:  # as the run saw them: with the time each part of the role took
            del done.hosts[:]
            done.hosts.extend(host_progress(h) for h in result.hosts)
        yield provisioning_pb2.ProvisionEvent(done=done)

    async def _revoke(self, tenant: str, name: str) -> None:
        try:
            _, nats_key = await asyncio.to_thread(self.service.revoke_gateway, tenant, name)
        except Conflict:  # revoked already (by hand, before the router was cleaned)
            return
        if nats_key:
            await self.on_revoke(nats_key)


def _operator() -> str:
    actor = acting()
    return actor.name if actor else ""
