"""GET /v1/indicators?scope=alliance (scope indicators:read): the alliance's indicators, anonymous."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from controller.api import models
from controller.api.auth import scoped
from controller.api.routes_tenant import ERRORS, CursorQuery, LimitQuery, known_params_only, next_link
from controller.services.tenant_scope import TenantScope

INDICATORS_READ = "indicators:read"
router = APIRouter(prefix="/v1", tags=["indicators"], dependencies=[Depends(known_params_only)])


@router.get("/indicators", response_model=models.SharedIndicatorPage, responses=ERRORS,
            summary="Indicators shared by the alliance (never who saw them)")
def list_indicators(
    request: Request,
    scope_name: Literal["alliance"] = Query(alias="scope", description="alliance: what the alliance shares"),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
    scope: TenantScope = Depends(scoped(INDICATORS_READ)),
) -> Response:
    items, nxt = scope.shared_indicators(limit, cursor)
    body = models.SharedIndicatorPage(
        items=[models.SharedIndicator(**vars(i)) for i in items], next_cursor=nxt)
    return Response(body.model_dump_json(), media_type="application/json", headers=next_link(request, nxt))
