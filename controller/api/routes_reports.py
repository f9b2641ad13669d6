"""GET /v1/reports/security, /v1/reports/monthly and /v1/alerts (scope reports:read).

The security report's CSV is one of its tables, chosen with ?table= (default: uploads, the
data-leak signal); its JSON has them all."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from controller.api import models
from controller.api.auth import scoped
from controller.api.routes_tenant import (
    ERRORS,
    CursorQuery,
    LimitQuery,
    PeriodQuery,
    known_params_only,
    next_link,
)
from controller.api.tables import csv_content, csv_response, wants_csv
from controller.domain.apikeys import REPORTS_READ
from controller.domain.reporting import SecurityReport
from controller.services.tenant_scope import TenantScope, current_period

router = APIRouter(prefix="/v1", tags=["reports"], dependencies=[Depends(known_params_only)])
Table = Literal["top_blocked", "ioc_hits", "uploads", "leak_alerts", "offline", "blocks_per_day",
                "beacon_suspects"]


def _table(report: SecurityReport, table: str) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    if table == "top_blocked":
        return ("domain", "blocked", "hosts"), [(b.domain, b.blocked, b.hosts) for b in report.top_blocked]
    if table == "ioc_hits":
        return (("indicator", "hits", "bytes", "hosts", "thanks_to_alliance"),
                [(i.indicator, i.hits, i.bytes, " ".join(f"{h.gateway}/{h.address}" for h in i.hosts),
                  i.thanks_to_alliance) for i in report.ioc_hits])
    if table == "leak_alerts":
        return (("id", "at_ms", "gateway", "host", "category", "bytes", "threshold"),
                [(a.id, a.at_ms, a.gateway, a.host, a.category, a.bytes, a.threshold)
                 for a in report.leak_alerts])
    if table == "offline":
        return (("gateway_id", "gateway", "online_seconds", "offline_seconds"),
                [(o.gateway_id, o.gateway, o.online_seconds, o.offline_seconds) for o in report.offline])
    if table == "blocks_per_day":
        return ("day", "blocked"), [(d.day, d.value) for d in report.blocks_per_day]
    if table == "beacon_suspects":
        return (("destination", "gateway", "host", "score", "connections", "last_seen_ms"),
                [(b.destination, b.host.gateway, b.host.address, b.score, b.connections, b.last_seen_ms)
                 for b in report.beacon_suspects])
    return (("category", "gateway", "host", "bytes"),
            [(u.category, u.host.gateway, u.host.address, u.bytes) for u in report.uploads])


@router.get("/reports/security", response_model=models.SecurityReport, summary="Security report of a month",
            responses={**ERRORS, 200: {"content": csv_content()}})
def get_security_report(
    request: Request,
    period: str | None = PeriodQuery,
    table: Table = Query("uploads", description="which table the CSV form holds"),
    scope: TenantScope = Depends(scoped(REPORTS_READ)),
) -> models.SecurityReport | Response:
    report = scope.security_report(period)
    if wants_csv(request):
        columns, rows = _table(report, table)
        return csv_response(columns, rows)
    return models.security(report)


@router.get("/reports/monthly", summary="The monthly report (HTML or PDF)", response_class=Response,
            responses={**ERRORS, 200: {"content": {"text/html": {"schema": {"type": "string"}},
                                                   "application/pdf": {"schema": {"type": "string",
                                                                                  "format": "binary"}}}}})
def get_monthly_report(
    period: str | None = PeriodQuery,
    format: Literal["html", "pdf"] = Query("html"),
    scope: TenantScope = Depends(scoped(REPORTS_READ)),
) -> Response:
    period = period or current_period()
    body = scope.monthly_report(period, format)
    if format == "pdf":
        return Response(body, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="mssp-report-{period}.pdf"'})
    return Response(body, media_type="text/html; charset=utf-8")


@router.get("/alerts", response_model=models.AlertPage, summary="Alerts, newest first",
            responses={**ERRORS, 200: {"content": csv_content()}})
def list_alerts(
    request: Request,
    since: int = Query(0, ge=0, le=2**53, description="epoch ms: alerts at or after it"),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
    scope: TenantScope = Depends(scoped(REPORTS_READ)),
) -> models.AlertPage | Response:
    page = scope.alerts(since, limit, cursor)
    names = scope.gateway_names()
    items = [models.alert(a, names) for a in page.items]
    link = next_link(request, page.next_cursor)
    if wants_csv(request):
        return csv_response(("id", "at_ms", "kind", "gateway_id", "gateway", "host", "subject"),
                            ((a.id, a.at_ms, a.kind, a.gateway_id, a.gateway, a.host, a.subject)
                             for a in items), link)
    body = models.AlertPage(items=items, next_cursor=page.next_cursor)
    return Response(body.model_dump_json(), media_type="application/json", headers=link)
