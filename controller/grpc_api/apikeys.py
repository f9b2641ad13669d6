"""ApiKeyService: what `msspctl apikey` and `msspctl partner` call. Operator-authenticated like
OperatorService; the key's secret crosses the wire once, in the Create/Rotate answer."""

from __future__ import annotations

import grpc

from controller.domain.apikeys import ApiKeyInfo
from controller.grpc_api.access import OperatorCalls
from controller.grpc_api.errors import maps_domain_errors
from mssp.v1 import accounts_pb2, accounts_pb2_grpc

Ctx = grpc.aio.ServicerContext


def api_key(info: ApiKeyInfo) -> accounts_pb2.ApiKey:
    return accounts_pb2.ApiKey(
        id=info.id, kind=info.kind, tenant=info.tenant, name=info.name, scopes=list(info.scopes),
        prefix=info.prefix, created_at_ms=info.created_at_ms, expires_at_ms=info.expires_at_ms,
        revoked_at_ms=info.revoked_at_ms, replaced_by=info.replaced_by, last_used_at_ms=info.last_used_at_ms,
        state=info.state,
    )


class ApiKeyServicer(OperatorCalls, accounts_pb2_grpc.ApiKeyServiceServicer):

    @maps_domain_errors
    async def CreateApiKey(
        self, request: accounts_pb2.CreateApiKeyRequest, context: Ctx
    ) -> accounts_pb2.CreatedApiKey:
        info, secret = await self._call(
            context, self.service.apikeys.create, request.tenant, list(request.scopes) or None,
            request.expires_seconds or None, request.name or None,
        )
        return accounts_pb2.CreatedApiKey(api_key=api_key(info), key=secret)

    @maps_domain_errors
    async def CreatePartner(
        self, request: accounts_pb2.CreatePartnerRequest, context: Ctx
    ) -> accounts_pb2.CreatedApiKey:
        info, secret = await self._call(
            context, self.service.apikeys.create_partner, request.name, request.expires_seconds or None
        )
        return accounts_pb2.CreatedApiKey(api_key=api_key(info), key=secret)

    @maps_domain_errors
    async def ListApiKeys(
        self, request: accounts_pb2.ListApiKeysRequest, context: Ctx
    ) -> accounts_pb2.ListApiKeysResponse:
        infos = await self._call(context, self.service.apikeys.list_keys, request.tenant or None)
        return accounts_pb2.ListApiKeysResponse(api_keys=[api_key(i) for i in infos])

    @maps_domain_errors
    async def RevokeApiKey(self, request: accounts_pb2.ApiKeyRef, context: Ctx) -> accounts_pb2.ApiKey:
        return api_key(await self._call(context, self.service.apikeys.revoke, request.id))

    @maps_domain_errors
    async def RotateApiKey(
        self, request: accounts_pb2.RotateApiKeyRequest, context: Ctx
    ) -> accounts_pb2.RotatedApiKey:
        new, secret, old = await self._call(
            context, self.service.apikeys.rotate, request.id, request.overlap_seconds
        )
        return accounts_pb2.RotatedApiKey(api_key=api_key(new), key=secret, previous=api_key(old))
