"""GET /v1/usage (scope usage:read): the month's meters, the plan, the charge lines and the total.
Its CSV form is the daily series (day, gateways online, egress bytes); the charge lines are in
the JSON and in `msspctl billing export`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from controller.api import models
from controller.api.auth import scoped
from controller.api.routes_tenant import ERRORS, PeriodQuery, known_params_only
from controller.api.tables import csv_content, csv_response, wants_csv
from controller.domain.apikeys import USAGE_READ
from controller.services.tenant_scope import TenantScope

router = APIRouter(prefix="/v1", tags=["usage"], dependencies=[Depends(known_params_only)])


@router.get("/usage", response_model=models.Usage, summary="Usage and charges of a month",
            responses={**ERRORS, 200: {"content": csv_content()}})
def get_usage(
    request: Request,
    period: str | None = PeriodQuery,
    scope: TenantScope = Depends(scoped(USAGE_READ)),
) -> models.Usage | Response:
    statement = scope.usage(period)
    if wants_csv(request):
        return csv_response(("day", "gateways_online", "egress_bytes"),
                            ((d.day, d.gateways_online, d.egress_bytes) for d in statement.daily))
    return models.usage(statement)
