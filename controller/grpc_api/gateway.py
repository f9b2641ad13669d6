"""GatewayService (mTLS): the gateway is whoever its certificate says, checked against revocation
on every call. Nothing in a request body can name another gateway.

Sync is rate-limited per gateway and its answer is bounded by the channel state (controller.resync);
its pushes are split into parts that fit one broker message and signed on the executor, never on
the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import TypeVar

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller import refusals
from controller.domain.errors import Unauthenticated
from controller.domain.models import GatewayIdentity, StatusUpdate
from controller.grpc_api.convert import versions, versions_from
from controller.grpc_api.errors import maps_domain_errors
from controller.nats.auth import GATEWAY_JWT_LIFETIME
from controller.pki import serial_of_pem
from controller.ratelimit import KeyedRateLimiter
from controller.service import ControllerService
from controller.services.alliance import BrokerAccess
from controller.services.sightings import Report
from controller.status_recorder import StatusRecorder
from mssp.common.clock import now_ms
from mssp.common.envelope import sign_split
from mssp.v1 import gateway_pb2, gateway_pb2_grpc, push_pb2

T = TypeVar("T")

# Resyncs per gateway: a burst covers start, reconnects and gaps; a loop is refused.
SYNC_BURST = 20
SYNC_PER_SECOND = 0.5


def sync_limiter() -> KeyedRateLimiter:
    return KeyedRateLimiter(burst=SYNC_BURST, per_second=SYNC_PER_SECOND, what="resyncs from this gateway")


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """Runs its database work on its own executor: a fleet-wide burst of gateway calls must not
    queue in front of operator calls and the push publisher."""

    def __init__(
        self, service: ControllerService, signing_key: Ed25519PrivateKey, executor: Executor,
        recorder: StatusRecorder, limiter: KeyedRateLimiter | None = None,
        nats_urls: Callable[[], list[str]] = list, mint_gateway_jwt: Callable[..., str] | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.on_change = on_change  # a sighting promoted an indicator: its push is in the outbox
        self.service = service
        self.mint_gateway_jwt = mint_gateway_jwt  # NatsIdentity.gateway_user_jwt
        self.nats_urls = nats_urls  # read on every call: the broker's URL can change while we run
        self.signing_key = signing_key
        self.executor = executor
        self.recorder = recorder
        self.limiter = limiter or sync_limiter()
        # First hits come in bursts (an outbreak on a LAN); a gateway that keeps sending is refused.
        self.sighting_limiter = KeyedRateLimiter(burst=SYNC_BURST, per_second=2.0,
                                                 what="sighting reports from this gateway")

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _identify(self, context: grpc.aio.ServicerContext) -> GatewayIdentity:
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            raise Unauthenticated("a gateway client certificate is required")
        identity = await self._run(self.service.gateway_identity_by_serial, serial_of_pem(pems[0]))
        if identity is None:
            raise Unauthenticated("gateway certificate is revoked or unknown")
        return identity

    @maps_domain_errors
    async def Sync(
        self, request: gateway_pb2.SyncRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[push_pb2.SignedEnvelope]:
        identity = await self._identify(context)
        self.limiter.take(identity.gateway_id)  # RateLimited: RESOURCE_EXHAUSTED (grpc_api/errors.py)
        pushes = await self._run(
            functools.partial(self.service.sync_pushes, force_snapshot=request.force_snapshot,
                              alliance=request.alliance),
            identity.tenant_id, versions_from(request.applied),
        )
        for envelope in await self._run(self._sign_all, pushes):
            yield envelope

    def _sign_all(self, pushes: list[push_pb2.Push]) -> list[push_pb2.SignedEnvelope]:
        return [envelope for push in pushes for envelope in sign_split(self.signing_key, push)]

    @maps_domain_errors
    async def ReportStatus(
        self, request: gateway_pb2.StatusReport, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.StatusAck:
        identity = await self._identify(context)
        refused, refused_total = refusals.reported(request)
        self.recorder.submit(StatusUpdate(
            gateway_id=identity.gateway_id, applied=versions_from(request.applied),
            agent_version=request.agent_version[:64],
            backend=request.backend[:32], last_error=request.last_error[:500], seen_at_ms=now_ms(),
            refusals=refused, refusals_total=refused_total,
            ioc_budget=request.ioc_budget, left_out_by_budget=request.left_out_by_budget,
            alliance_aware=request.alliance_aware,
        ))
        # The alliance head only for an agent that follows it: an older agent would see a difference it
        # cannot close and resync on every heartbeat.
        desired = await self.recorder.desired(identity.tenant_id, identity.sharing and request.alliance)
        return gateway_pb2.StatusAck(desired=versions(desired))

    @maps_domain_errors
    async def GetBrokers(
        self, request: gateway_pb2.GetBrokersRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.Brokers:
        identity = await self._identify(context)  # a revoked gateway learns nothing
        access = await self._run(self.service.alliance.broker_access, identity.gateway_id)
        if access is None:
            raise Unauthenticated("gateway certificate is revoked or unknown")
        user_jwt = ""
        if access.jwt_issued_s and self.mint_gateway_jwt is not None:
            user_jwt = await self._run(self._user_jwt, access)
        return gateway_pb2.Brokers(nats_urls=self.nats_urls(), user_jwt=user_jwt, channels=access.channels)

    @maps_domain_errors
    async def ReportSightings(
        self, request: gateway_pb2.SightingReport, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.SightingAck:
        identity = await self._identify(context)  # the tenant and gateway come from the certificate
        self.sighting_limiter.take(identity.gateway_id)
        reports = [Report(r.indicator[:300], r.host[:64], r.via[:16], r.count, r.first_seen_ms,
                          r.last_seen_ms, r.score) for r in request.sightings]
        recorded = await self._run(self.service.sightings.record, identity.tenant_id, identity.gateway_id,
                                   reports)
        if recorded.promoted:
            self.on_change()
        return gateway_pb2.SightingAck(accepted=recorded.accepted, refused=recorded.refused)

    def _user_jwt(self, access: BrokerAccess) -> str:
        """The gateway's current JWT, the same bytes on every call (the issue time is stored); it
        expires when the enrollment's would have."""
        assert self.mint_gateway_jwt is not None
        expires = access.enrolled_at_ms // 1000 + int(GATEWAY_JWT_LIFETIME.total_seconds())
        return self.mint_gateway_jwt(access.nats_public_key, access.tenant_id, access.gateway_id,
                                     alliance=access.sharing, issued_at=access.jwt_issued_s,
                                     expires_at=expires)
