"""BillingService: what `msspctl billing export|close` call. Operator-authenticated like
OperatorService; amounts cross the wire as decimal strings so nothing is rounded on the way."""

from __future__ import annotations

import asyncio

import grpc

from controller.domain.reporting import ChargeLine
from controller.grpc_api.errors import maps_domain_errors
from controller.grpc_api.operator import authenticate_operator
from controller.service import ControllerService
from controller.services.billing import Export
from mssp.v1 import accounts_pb2, accounts_pb2_grpc

Ctx = grpc.aio.ServicerContext


def billing_line(line: ChargeLine) -> accounts_pb2.BillingLine:
    return accounts_pb2.BillingLine(
        id=line.id, tenant_id=line.tenant_id, tenant=line.tenant, period=line.period, meter=line.meter,
        description=line.description, quantity=str(line.quantity), included=str(line.included),
        billable=str(line.billable), unit_price=str(line.unit_price), amount=str(line.amount),
        currency=line.currency, plan=line.plan,
    )


def billing_export(period: str, export: Export) -> accounts_pb2.BillingExport:
    lines, closed, closed_at_ms, warnings = export
    return accounts_pb2.BillingExport(
        period=period, closed=closed, closed_at_ms=closed_at_ms,
        lines=[billing_line(line) for line in lines], warnings=warnings,
    )


class BillingServicer(accounts_pb2_grpc.BillingServiceServicer):
    def __init__(self, service: ControllerService, operator_token_digest: bytes) -> None:
        self.service = service
        self._digest = operator_token_digest

    @maps_domain_errors
    async def ExportBilling(
        self, request: accounts_pb2.BillingPeriodRef, context: Ctx
    ) -> accounts_pb2.BillingExport:
        authenticate_operator(context, self._digest)
        export = await asyncio.to_thread(self.service.billing.export, request.period)
        return billing_export(request.period.strip(), export)

    @maps_domain_errors
    async def CloseBillingPeriod(
        self, request: accounts_pb2.BillingPeriodRef, context: Ctx
    ) -> accounts_pb2.BillingExport:
        authenticate_operator(context, self._digest)
        export = await asyncio.to_thread(self.service.billing.close, request.period)
        return billing_export(request.period.strip(), export)
