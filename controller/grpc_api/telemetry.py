"""TelemetryService: alerts, top lists and billing usage for msspctl.

Authenticated exactly like OperatorService (the operator bearer token, compared as a digest in
constant time). Tenants are named as the operator names them; names are resolved to ids through
callables (the service's direct lookups, one query each: ControllerService.tenant_id, tenant_names,
gateway_names) so this adapter does not depend on the fleet service, and ids are shown with names.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc

from controller.domain.errors import InvalidInput
from controller.grpc_api.errors import maps_domain_errors
from controller.grpc_api.operator import authenticate_operator
from controller.store.db import Database
from controller.telemetry import queries
from mssp.common.clock import now_ms
from mssp.v1 import telemetry_pb2, telemetry_pb2_grpc

Ctx = grpc.aio.ServicerContext

DEFAULT_ALERT_WINDOW = 7 * 86400
DEFAULT_TOP_WINDOW = 86400
MAX_WINDOW = 400 * 86400


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(
        self,
        db: Database,
        operator_token_digest: bytes,
        *,
        resolve_tenant: Callable[[str], str],
        tenant_names: Callable[[], dict[str, str]] | None = None,
        gateway_names: Callable[[], dict[str, str]] | None = None,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        """resolve_tenant: name -> id (raising NotFound); tenant_names / gateway_names: id -> name."""
        self.db = db
        self._digest = operator_token_digest
        self.resolve_tenant = resolve_tenant
        self.tenant_names = tenant_names
        self.gateway_names = gateway_names
        self.clock_ms = clock_ms

    async def _call(self, context: Ctx, fn: Callable[..., Any], *args: Any) -> Any:
        authenticate_operator(context, self._digest)
        return await asyncio.to_thread(fn, *args)

    def _since(self, seconds: int, default: int) -> int:
        if seconds < 0 or seconds > MAX_WINDOW:
            raise InvalidInput(f"since_seconds must be between 0 and {MAX_WINDOW}, got {seconds}")
        return self.clock_ms() - (seconds or default) * 1000

    def _tenant_id(self, name: str) -> str:
        if not name.strip():
            raise InvalidInput("a tenant is required")
        return self.resolve_tenant(name.strip())

    def _tenant_names(self) -> dict[str, str]:
        return self.tenant_names() if self.tenant_names else {}

    def _gateway_names(self) -> dict[str, str]:
        return self.gateway_names() if self.gateway_names else {}

    # ---- RPCs ------------------------------------------------------------------------------

    @maps_domain_errors
    async def ListAlerts(
        self, request: telemetry_pb2.ListAlertsRequest, context: Ctx
    ) -> telemetry_pb2.ListAlertsResponse:
        return await self._call(context, self._list_alerts, request)

    def _list_alerts(self, request: telemetry_pb2.ListAlertsRequest) -> telemetry_pb2.ListAlertsResponse:
        tenant_id = self._tenant_id(request.tenant) if request.tenant else None
        since = self._since(request.since_seconds, DEFAULT_ALERT_WINDOW)
        found = queries.alerts(self.db, tenant_id, since, request.limit or 100, request.kind or None)
        tenants, gateways = self._tenant_names(), self._gateway_names()
        return telemetry_pb2.ListAlertsResponse(alerts=[
            telemetry_pb2.Alert(
                id=a.id, tenant_id=a.tenant_id, tenant=tenants.get(a.tenant_id, ""),
                gateway_id=a.gateway_id, gateway=gateways.get(a.gateway_id, ""), kind=a.kind,
                subject=a.subject, host=a.host, at_ms=a.at_ms,
                details=json.dumps(a.details, sort_keys=True),
            )
            for a in found
        ])

    @maps_domain_errors
    async def Top(self, request: telemetry_pb2.TopRequest, context: Ctx) -> telemetry_pb2.TopResponse:
        return await self._call(context, self._top, request)

    def _top(self, request: telemetry_pb2.TopRequest) -> telemetry_pb2.TopResponse:
        tenant_id = self._tenant_id(request.tenant)
        by = request.by or "host"
        since = self._since(request.since_seconds, DEFAULT_TOP_WINDOW)
        items = queries.top(self.db, tenant_id, by, since, request.limit or 20)
        gateways = self._gateway_names()
        return telemetry_pb2.TopResponse(
            tenant=request.tenant.strip(), by=by, since_ms=since,
            entries=[
                telemetry_pb2.TopEntry(
                    key=i.key, gateway_id=i.gateway_id, gateway=gateways.get(i.gateway_id, ""),
                    packets=i.packets, bytes=i.bytes, count=i.count, blocked=i.blocked, hosts=len(i.hosts),
                )
                for i in items
            ],
        )

    @maps_domain_errors
    async def Usage(self, request: telemetry_pb2.UsageRequest, context: Ctx) -> telemetry_pb2.UsageResponse:
        return await self._call(context, self._usage, request)

    def _usage(self, request: telemetry_pb2.UsageRequest) -> telemetry_pb2.UsageResponse:
        tenant_id = self._tenant_id(request.tenant)
        this_month = datetime.fromtimestamp(self.clock_ms() / 1000, UTC).strftime("%Y-%m")
        period = request.period.strip() or this_month
        result = queries.usage(self.db, tenant_id, period)
        gateways = self._gateway_names()
        return telemetry_pb2.UsageResponse(
            tenant=request.tenant.strip(), tenant_id=tenant_id, period=result.period,
            gateway_days=result.gateway_days, egress_bytes=result.egress_bytes,
            gateways=[
                telemetry_pb2.GatewayUsage(
                    gateway_id=g.gateway_id, gateway=gateways.get(g.gateway_id, ""),
                    days_online=g.days_online, egress_bytes=g.egress_bytes, batches=g.batches,
                    online_seconds=g.online_seconds,
                )
                for g in result.gateways
            ],
        )
