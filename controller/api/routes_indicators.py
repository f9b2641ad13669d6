"""GET /v1/indicators?scope=alliance (scope indicators:read): the alliance's indicators, anonymous;
POST /v1/indicators/{id}/false-positive (scope indicators:write): not enforced here from now on."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from controller.api import models
from controller.api.auth import scoped
from controller.api.routes_tenant import ERRORS, CursorQuery, LimitQuery, known_params_only, next_link
from controller.services.tenant_scope import TenantScope

INDICATORS_READ = "indicators:read"
INDICATORS_WRITE = "indicators:write"
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


@router.post("/indicators/{indicator_id}/false-positive", response_model=models.FalsePositive,
             responses=ERRORS, summary="Report a shared indicator as a false positive: this tenant's "
             "gateways stop enforcing it")
def report_false_positive(
    indicator_id: str = Path(max_length=20, pattern=r"^[0-9]{1,19}$"),
    scope: TenantScope = Depends(scoped(INDICATORS_WRITE)),
) -> models.FalsePositive:
    result = scope.report_false_positive(indicator_id)
    return models.FalsePositive(indicator=result.value, exempt=True, new=result.new)
