"""Bearer-key authentication and scopes, as FastAPI dependencies.

`scoped(scope)` authenticates `Authorization: Bearer KEY` with the service's ApiKeys (missing,
malformed, unknown, revoked or expired: 401 with WWW-Authenticate), counts the request against the
key's rate limit (429 past it), checks the scope (403) and answers a TenantScope bound to the key's
tenant: the routes never see a tenant id they could mix up. Partner keys are bound to no tenant and
are refused here (403): they serve the TAXII collection, not tenant data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from controller.api.problems import ApiProblem
from controller.api.ratelimit import RateLimiter, remember
from controller.domain.apikeys import KIND_TENANT
from controller.domain.errors import PermissionDenied, Unauthenticated
from controller.services.tenant_scope import TenantScope

MAX_KEY_CHARS = 200

bearer = HTTPBearer(auto_error=False, scheme_name="apiKey",
                    description="A tenant API key (`msspctl apikey create TENANT`): mssp_tk_...")


def _client(request: Request) -> str:
    return f"addr:{request.client.host}" if request.client else "addr:?"


def _limit(request: Request, key: str) -> None:
    limiter: RateLimiter = request.app.state.limiter
    decision = limiter.hit(key)
    remember(request.scope.setdefault("state", {}), decision)
    if not decision.allowed:
        raise ApiProblem(429, f"rate limit of {decision.limit} requests per {decision.window} s exceeded; "
                         f"retry in {decision.reset} s", decision.headers())


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Any:
    """The key's Principal, or Unauthenticated (401); counts the request either way."""
    try:
        if not request.headers.get("authorization"):
            raise Unauthenticated("missing Authorization: Bearer <API key>")
        # HTTPBearer gives None unless the scheme is Bearer with a value (stripped)
        if credentials is None or len(credentials.credentials) > MAX_KEY_CHARS:
            raise Unauthenticated("malformed Authorization header: use Bearer <API key>")
        principal = request.app.state.service.apikeys.authenticate(credentials.credentials)
    except Unauthenticated:
        _limit(request, _client(request))  # refused requests count against the client address
        raise
    _limit(request, f"key:{principal.key_id}")
    return principal


def scoped(scope: str) -> Callable[..., TenantScope]:
    def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> TenantScope:
        principal = authenticate(request, credentials)
        if principal.kind != KIND_TENANT or not principal.tenant_id:
            raise PermissionDenied("this API key is not a tenant key; tenant endpoints need one")
        principal.require(scope)
        return request.app.state.service.for_tenant(principal.tenant_id)  # type: ignore[no-any-return]

    dependency.__name__ = f"scoped_{scope.replace(':', '_')}"
    return dependency
