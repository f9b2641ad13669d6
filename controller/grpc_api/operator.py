"""OperatorService: what msspctl calls. Every call carries the operator credential; every
change that alters desired state wakes the push publisher after its commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from controller import outbox
from controller.ca_set import CaSet
from controller.grpc_api import convert
from controller.grpc_api.access import authenticate_operator, token_digest
from controller.grpc_api.ca import CaCalls
from controller.grpc_api.enrollment import enrollment_token
from controller.grpc_api.errors import maps_domain_errors
from controller.grpc_api.policy_calls import PolicyCalls
from controller.grpc_api.signing import KeyRotation, SigningKeyCalls
from controller.pki import CertificateAuthority
from controller.service import ControllerService
from mssp.v1 import operator_pb2, operator_pb2_grpc

Ctx = grpc.aio.ServicerContext
__all__ = ["OperatorServicer", "authenticate_operator", "token_digest"]


def _push_errors(service: ControllerService) -> list[operator_pb2.PushError]:
    return [operator_pb2.PushError(channel=e.channel, seq=e.seq, error=e.error, created_at_ms=e.created_at_ms)
            for e in outbox.publish_errors(service.db)]


class OperatorServicer(PolicyCalls, SigningKeyCalls, CaCalls, operator_pb2_grpc.OperatorServiceServicer):
    def __init__(
        self,
        service: ControllerService,
        ca: CertificateAuthority | CaSet,
        operator_token_digest: bytes,
        *,
        on_change: Callable[[], None],
        on_revoke: Callable[[str], Awaitable[None]],
        rotation: KeyRotation | None = None,
        on_ca_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
        self.ca = ca
        self._digest = operator_token_digest
        self.on_change = on_change
        self.on_revoke = on_revoke
        self.on_ca_change = on_ca_change  # the gateway listener takes the new trust (gateway_listener.py)
        self.rotation = rotation

    def authenticate(self, context: Ctx) -> None:
        authenticate_operator(context, self._digest)

    async def _call(self, context: Ctx, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.authenticate(context)
        return await asyncio.to_thread(fn, *args, **kwargs)

    @maps_domain_errors
    async def CreateTenant(
        self, request: operator_pb2.CreateTenantRequest, context: Ctx
    ) -> operator_pb2.Tenant:
        tenant = await self._call(context, self.service.create_tenant, request.name, request.plan)
        return convert.tenant(tenant)

    @maps_domain_errors
    async def ListTenants(
        self, request: operator_pb2.ListTenantsRequest, context: Ctx
    ) -> operator_pb2.ListTenantsResponse:
        tenants = await self._call(context, self.service.list_tenants)
        return operator_pb2.ListTenantsResponse(tenants=[convert.tenant(t) for t in tenants])

    @maps_domain_errors
    async def GetTenant(
        self, request: operator_pb2.TenantRef, context: Ctx
    ) -> operator_pb2.Tenant:
        return convert.tenant(await self._call(context, self.service.get_tenant, request.name))

    @maps_domain_errors
    async def SetTenantPlan(
        self, request: operator_pb2.SetTenantPlanRequest, context: Ctx
    ) -> operator_pb2.Tenant:
        return convert.tenant(await self._call(context, self.service.set_plan, request.name, request.plan))

    @maps_domain_errors
    async def SetTenantSharing(
        self, request: operator_pb2.SetTenantSharingRequest, context: Ctx
    ) -> operator_pb2.Tenant:
        tenant, nats_keys = await self._call(context, self.service.set_sharing, request.name, request.sharing)
        if nats_keys:  # their old JWTs die at the broker; the agents fetch the new ones (GetBrokers)
            more = f" (+{len(nats_keys) - 1} more)" if len(nats_keys) > 1 else ""
            await self.on_revoke(nats_keys[0] + more)
        return convert.tenant(tenant)

    @maps_domain_errors
    async def DeleteTenant(
        self, request: operator_pb2.TenantRef, context: Ctx
    ) -> operator_pb2.DeleteTenantResponse:
        tenant, revoked, nats_keys = await self._call(context, self.service.delete_tenant, request.name)
        if nats_keys:  # one broker update covers them all: its revocation list is read from the store
            more = f" (+{len(nats_keys) - 1} more)" if len(nats_keys) > 1 else ""
            await self.on_revoke(nats_keys[0] + more)
        return operator_pb2.DeleteTenantResponse(tenant=convert.tenant(tenant), gateways_revoked=revoked)

    @maps_domain_errors
    async def AddGateway(
        self, request: operator_pb2.AddGatewayRequest, context: Ctx
    ) -> operator_pb2.AddGatewayResponse:
        gateway, secret, expires = await self._call(
            context, self.service.add_gateway, request.tenant, request.name,
            request.token_ttl_seconds or None,
        )
        return operator_pb2.AddGatewayResponse(
            gateway=convert.gateway(gateway), enrollment_token=enrollment_token(secret, self.ca),
            token_expires_at_ms=expires,
        )

    @maps_domain_errors
    async def ListGateways(
        self, request: operator_pb2.ListGatewaysRequest, context: Ctx
    ) -> operator_pb2.ListGatewaysResponse:
        gateways = await self._call(context, self.service.list_gateways, request.tenant or None)
        return operator_pb2.ListGatewaysResponse(gateways=[convert.gateway(g) for g in gateways])

    @maps_domain_errors
    async def GetGateway(
        self, request: operator_pb2.GatewayRef, context: Ctx
    ) -> operator_pb2.Gateway:
        gateway = await self._call(context, self.service.get_gateway, request.tenant, request.name)
        return convert.gateway(gateway)

    @maps_domain_errors
    async def RevokeGateway(
        self, request: operator_pb2.GatewayRef, context: Ctx
    ) -> operator_pb2.Gateway:
        gateway, nats_key = await self._call(
            context, self.service.revoke_gateway, request.tenant, request.name
        )
        if nats_key:
            await self.on_revoke(nats_key)
        return convert.gateway(gateway)

    @maps_domain_errors
    async def IssueGatewayToken(
        self, request: operator_pb2.IssueGatewayTokenRequest, context: Ctx
    ) -> operator_pb2.AddGatewayResponse:
        gateway, secret, expires, new_identity = await self._call(
            context, self.service.issue_token, request.tenant, request.name,
            request.token_ttl_seconds or None,
        )
        if new_identity:
            self.on_change()  # its policy override, if any, moved to the new identity (a push)
        return operator_pb2.AddGatewayResponse(
            gateway=convert.gateway(gateway), enrollment_token=enrollment_token(secret, self.ca),
            token_expires_at_ms=expires, new_identity=new_identity,
        )

    @maps_domain_errors
    async def DeleteGateway(
        self, request: operator_pb2.GatewayRef, context: Ctx
    ) -> operator_pb2.Gateway:
        gateway, nats_key = await self._call(
            context, self.service.delete_gateway, request.tenant, request.name
        )
        self.on_change()  # its policy override, if it had one, went with it (a push)
        if nats_key:
            await self.on_revoke(nats_key)
        return convert.gateway(gateway)

    @maps_domain_errors
    async def SetPolicy(
        self, request: operator_pb2.SetPolicyRequest, context: Ctx
    ) -> operator_pb2.PolicyInfo:
        info = await self._call(context, self.service.policies.set_policy, request.tenant, request.yaml,
                                request.gateway)  # a gateway: its override (policy_calls.py)
        self.on_change()
        return convert.policy_info(info)

    @maps_domain_errors
    async def GetPolicy(
        self, request: operator_pb2.TenantRef, context: Ctx
    ) -> operator_pb2.PolicyInfo:
        return convert.policy_info(await self._call(context, self.service.get_policy, request.name))

    @maps_domain_errors
    async def AddIoc(
        self, request: operator_pb2.AddIocRequest, context: Ctx
    ) -> operator_pb2.IocInfo:
        info = await self._call(
            context, self.service.add_ioc, request.value, request.scope or "global",
            # Given when flagged, or non-zero (a client from before has_ttl never sets it).
            ttl_seconds=request.ttl_seconds if request.has_ttl or request.ttl_seconds else None,
            source=request.source or None,
            confidence=request.confidence if request.has_confidence else None,
        )
        self.on_change()
        return convert.ioc_info(info)

    @maps_domain_errors
    async def RemoveIoc(
        self, request: operator_pb2.RemoveIocRequest, context: Ctx
    ) -> operator_pb2.RemoveIocResponse:
        result = await self._call(context, self.service.remove_ioc, request.value, request.scope or "global")
        self.on_change()
        return convert.remove_ioc(result)

    @maps_domain_errors
    async def ListIocs(
        self, request: operator_pb2.ListIocsRequest, context: Ctx
    ) -> operator_pb2.ListIocsResponse:
        iocs = await self._call(context, self.service.list_iocs, request.scope or None)
        return operator_pb2.ListIocsResponse(iocs=[convert.ioc_info(i) for i in iocs])

    @maps_domain_errors
    async def FleetStatus(
        self, request: operator_pb2.FleetStatusRequest, context: Ctx
    ) -> operator_pb2.FleetStatusResponse:
        fleet = await self._call(context, self.service.fleet_status, request.tenant or None)
        reply = convert.fleet_status(fleet)
        reply.push_errors.extend(await asyncio.to_thread(_push_errors, self.service))
        return reply
