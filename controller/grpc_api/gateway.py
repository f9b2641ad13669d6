"""GatewayService (mTLS): the gateway is whoever its certificate says, checked against revocation
on every call. Nothing in a request body can name another gateway.

Sync is rate-limited per gateway and its answer is bounded by the channel state (controller.resync);
its pushes are split into parts that fit one broker message and signed on the executor, never on
the event loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller import refusals
from controller.ca_set import CaSet
from controller.domain.errors import Unauthenticated, Unavailable
from controller.domain.models import GatewayIdentity, StatusUpdate
from controller.grpc_api.ca import ca_trust
from controller.grpc_api.convert import versions, versions_from
from controller.grpc_api.enrollment import check_nats_public_key
from controller.grpc_api.errors import maps_domain_errors
from controller.metrics.instruments import NO_METRICS, PushMetrics
from controller.nats.auth import GATEWAY_JWT_LIFETIME
from controller.pki import CertificateAuthority, load_gateway_csr, serial_of_pem
from controller.ratelimit import KeyedRateLimiter
from controller.service import ControllerService
from controller.services.alliance import BrokerAccess
from controller.services.ca_fleet import CaFleet
from controller.services.sightings import Report
from controller.signing_keys import SigningKeys
from controller.status_recorder import StatusRecorder
from mssp.common.clock import now_ms
from mssp.common.envelope import sign_split
from mssp.v1 import gateway_pb2, gateway_pb2_grpc, push_pb2

T = TypeVar("T")


@dataclass(frozen=True)
class Renewal:
    """What renewing a gateway's certificate takes: the CA, the lifetime, the broker's revocation."""

    ca: CertificateAuthority | CaSet
    lifetime: dt.timedelta
    on_revoke: Callable[[str], Awaitable[None]]

# Resyncs per gateway: a burst covers start, reconnects and gaps; a loop is refused.
SYNC_BURST = 20
SYNC_PER_SECOND = 0.5
# After a renewal, the NATS key it replaced is revoked at the broker this much later: the agent has
# saved its new credentials by then, so the connection the revocation cuts comes back at once.
REVOKE_DELAY = 2.0


def presented_serial(context: grpc.aio.ServicerContext) -> str:
    """The serial of the client certificate the TLS handshake verified."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        raise Unauthenticated("a gateway client certificate is required")
    return serial_of_pem(pems[0])


def sync_limiter() -> KeyedRateLimiter:
    return KeyedRateLimiter(burst=SYNC_BURST, per_second=SYNC_PER_SECOND, what="resyncs from this gateway")


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """Runs its database work on its own executor: a fleet-wide burst of gateway calls must not
    queue in front of operator calls and the push publisher."""

    def __init__(
        self, service: ControllerService, signing_key: Ed25519PrivateKey | SigningKeys, executor: Executor,
        recorder: StatusRecorder, limiter: KeyedRateLimiter | None = None,
        nats_urls: Callable[[], list[str]] = list, mint_gateway_jwt: Callable[..., str] | None = None,
        on_change: Callable[[], None] = lambda: None, renewal: Renewal | None = None,
        metrics: PushMetrics = NO_METRICS,
    ) -> None:
        self.metrics = metrics  # resyncs served
        self.on_change = on_change  # a sighting promoted an indicator: its push is in the outbox
        self.service = service
        self.mint_gateway_jwt = mint_gateway_jwt  # NatsIdentity.gateway_user_jwt
        self.nats_urls = nats_urls  # read on every call: the broker's URL can change while we run
        self.keys = SigningKeys.of(signing_key)
        self.renewal = renewal
        self._background: set[asyncio.Task[None]] = set()
        self.executor = executor
        self.recorder = recorder
        self.limiter = limiter or sync_limiter()
        # First hits come in bursts (an outbreak on a LAN); a gateway that keeps sending is refused.
        self.sighting_limiter = KeyedRateLimiter(burst=SYNC_BURST, per_second=2.0,
                                                 what="sighting reports from this gateway")

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _identify(self, context: grpc.aio.ServicerContext) -> GatewayIdentity:
        identity = await self._run(self.service.gateway_identity_by_serial, presented_serial(context))
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
        envelopes = await self._run(self._sign_all, pushes)
        self.metrics.resync_served(len(pushes))
        for envelope in envelopes:
            yield envelope

    def _sign_all(self, pushes: list[push_pb2.Push]) -> list[push_pb2.SignedEnvelope]:
        return [envelope for push in pushes for envelope in sign_split(self.keys.active, push)]

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
            alliance_aware=request.alliance_aware, rotation_aware=request.rotation_aware,
            clock_offset_ms=request.clock_offset_ms, ca_rollover_aware=request.ca_rollover_aware,
        ))
        # The alliance head only for an agent that follows it: an older agent would see a difference it
        # cannot close and resync on every heartbeat.
        desired = await self.recorder.desired(identity.tenant_id, identity.sharing and request.alliance)
        return gateway_pb2.StatusAck(desired=versions(desired), controller_time_ms=now_ms())

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
        return gateway_pb2.Brokers(nats_urls=self.nats_urls(), user_jwt=user_jwt, channels=access.channels,
                                   signing_keys=self.keys.trusted(),
                                   ca=ca_trust(self.renewal.ca) if self.renewal is not None else None)

    @maps_domain_errors
    async def Renew(
        self, request: gateway_pb2.RenewRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RenewResponse:
        if self.renewal is None or self.mint_gateway_jwt is None:
            raise Unavailable("this controller does not renew certificates")
        serial = presented_serial(context)
        load_gateway_csr(request.csr_pem)  # everything checked before anything is signed or stored
        nats_key = check_nats_public_key(request.nats_public_key)
        renewals = self.service.renewals
        ticket = await self._run(renewals.ticket, serial)
        self.limiter.take(ticket.gateway_id)
        signer = CaSet.of(self.renewal.ca).signer  # the next CA during a rollover
        issued = await self._run(functools.partial(
            signer.sign_gateway_csr, request.csr_pem, tenant_id=ticket.tenant_id,
            gateway_id=ticket.gateway_id, validity=self.renewal.lifetime))
        not_before, not_after = issued.validity_ms
        renewed = await self._run(functools.partial(
            renewals.commit, ticket, serial=issued.serial_hex, not_before_ms=not_before,
            not_after_ms=not_after, nats_public_key=nats_key))
        await self._run(CaFleet(self.service.db).record_certificate, ticket.gateway_id, issued.serial_hex,
                        signer.fingerprint)
        user_jwt = await self._run(functools.partial(
            self.mint_gateway_jwt, nats_key, ticket.tenant_id, ticket.gateway_id, alliance=ticket.sharing,
            issued_at=renewed.jwt_issued_s, expires_at=not_after // 1000))
        if renewed.replaced_nats_key:  # the broker drops the old key once the agent has saved the new one
            task = asyncio.create_task(self._revoke_later(renewed.replaced_nats_key))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return gateway_pb2.RenewResponse(client_cert_pem=issued.cert_pem, nats_user_jwt=user_jwt,
                                         not_after_ms=not_after)

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

    async def _revoke_later(self, nats_key: str) -> None:
        """Committed already: the broker's reconcile loop would push it anyway, this is just sooner."""
        assert self.renewal is not None
        await asyncio.sleep(REVOKE_DELAY)
        await self.renewal.on_revoke(nats_key)

    def _user_jwt(self, access: BrokerAccess) -> str:
        """The gateway's current JWT, the same bytes on every call (the issue time is stored); it
        expires when the enrollment's would have."""
        assert self.mint_gateway_jwt is not None
        expires = access.cert_not_after_ms // 1000 or (
            access.enrolled_at_ms // 1000 + int(GATEWAY_JWT_LIFETIME.total_seconds()))
        return self.mint_gateway_jwt(access.nats_public_key, access.tenant_id, access.gateway_id,
                                     alliance=access.sharing, issued_at=access.jwt_issued_s,
                                     expires_at=expires)
