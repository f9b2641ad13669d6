"""GET /v1/tenant, /v1/gateways, /v1/gateways/{id} (scope gateways:read)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from controller.api import models
from controller.api.auth import scoped
from controller.api.problems import ApiProblem, responses
from controller.api.tables import csv_content, csv_response, wants_csv
from controller.domain.apikeys import GATEWAYS_READ
from controller.domain.pagination import DEFAULT_LIMIT, MAX_CURSOR_CHARS, MAX_LIMIT
from controller.services.tenant_scope import TenantScope


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


_KNOWN_ATTR = "_mssp_known_query_params"


async def known_params_only(request: Request) -> None:
    """400 for a query parameter the operation does not define: `?perod=` silently meaning "this
    month" would give a BI system wrong figures without a word."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = getattr(route, _KNOWN_ATTR, None)
    if known is None:  # walked once per route (kept on it), not on every request
        known = frozenset(_query_names(dependant))
        setattr(route, _KNOWN_ATTR, known)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ApiProblem(400, f"unknown query parameter {unknown[0][:40]!r}; this operation takes "
                         f"{', '.join(sorted(known)) or 'none'}")


router = APIRouter(prefix="/v1", tags=["tenant"], dependencies=[Depends(known_params_only)])
ERRORS = responses(400, 401, 403, 404, 413, 414, 422, 429, 431, 500, 503)
PERIOD = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"  # 1970-01..2999-12, like check_period
GATEWAY_COLUMNS = ("id", "name", "status", "desired_global_seq", "desired_tenant_seq", "applied_global_seq",
                   "applied_tenant_seq", "converged", "online", "last_seen_ms", "agent_version", "period",
                   "online_seconds")

PeriodQuery = Query(None, pattern=PERIOD, description="UTC month YYYY-MM (default: the current one)")
LimitQuery = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="items per page")
CursorQuery = Query(None, max_length=MAX_CURSOR_CHARS, pattern=r"^[A-Za-z0-9_-]*$",
                    description="next_cursor of the previous page, unchanged")


def next_link(request: Request, cursor: str | None) -> dict[str, str]:
    """RFC 8288 Link to the next page (also for CSV, which has no body field for it)."""
    if cursor is None:
        return {}
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    params["cursor"] = cursor
    return {"Link": f'<{request.url.path}?{urlencode(params)}>; rel="next"'}


@router.get("/tenant", response_model=models.Tenant, responses=ERRORS, summary="This key's tenant")
def get_tenant(scope: TenantScope = Depends(scoped(GATEWAYS_READ))) -> models.Tenant:
    t = scope.tenant()
    return models.Tenant(id=t.id, name=t.name, plan=t.plan, gateway_count=t.gateway_count, sharing=t.sharing)


@router.get("/gateways", response_model=models.GatewayPage, summary="The tenant's gateways, by name",
            responses={**ERRORS, 200: {"content": csv_content()}})
def list_gateways(
    request: Request,
    period: str | None = PeriodQuery,
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
    scope: TenantScope = Depends(scoped(GATEWAYS_READ)),
) -> models.GatewayPage | Response:
    page = scope.gateways(period, limit, cursor)
    link = next_link(request, page.next_cursor)
    if wants_csv(request):
        return csv_response(GATEWAY_COLUMNS, ([getattr(g, c) for c in GATEWAY_COLUMNS] for g in page.items),
                            link)
    body = models.GatewayPage(items=[models.gateway(g) for g in page.items], next_cursor=page.next_cursor)
    return Response(body.model_dump_json(), media_type="application/json", headers=link)


@router.get("/gateways/{gateway_id}", response_model=models.Gateway, responses=ERRORS,
            summary="One gateway of the tenant")
def get_gateway(
    gateway_id: str = Path(max_length=64),
    period: str | None = PeriodQuery,
    scope: TenantScope = Depends(scoped(GATEWAYS_READ)),
) -> models.Gateway:
    return models.gateway(scope.gateway(gateway_id, period))
