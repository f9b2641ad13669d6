"""What billing reads: meters from usage_daily, the closed periods, their frozen lines and what was
billed per closed month (billing_usage). Grouped in SQL; one query per question, not per tenant; the
caller's connection, so one statement is one round trip."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from controller.billing.charges import RAW_EGRESS_BYTES, RAW_GATEWAY_DAYS, Meters
from controller.domain.reporting import ChargeLine, DailyUsage
from controller.store import models as rows
from controller.store.account_models import BillingLine, BillingPeriod, BillingUsage
from controller.telemetry.models import UsageDaily
from controller.telemetry.queries import parse_period

_USAGE = UsageDaily.__table__  # type: ignore[attr-defined]
_TENANT = rows.Tenant.__table__  # type: ignore[attr-defined]
_PERIOD = BillingPeriod.__table__  # type: ignore[attr-defined]
_LINE = BillingLine.__table__  # type: ignore[attr-defined]
_BILLED = BillingUsage.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TenantRef:
    id: str
    name: str
    plan: str
    deleted: bool


@dataclass(frozen=True)
class Closed:
    period: str
    closed_at_ms: int
    plans: str  # the plan book's JSON


def _online() -> object:
    return func.sum(case((_USAGE.c.batches > 0, 1), else_=0))


def tenants(conn: Connection, tenant_id: str | None = None) -> dict[str, TenantRef]:
    stmt = select(_TENANT.c.id, _TENANT.c.name, _TENANT.c.plan, _TENANT.c.deleted_at_ms)
    if tenant_id is not None:
        stmt = stmt.where(_TENANT.c.id == tenant_id)
    return {r[0]: TenantRef(r[0], r[1], r[2], bool(r[3])) for r in conn.execute(stmt)}


def meters(conn: Connection, period: str, tenant_id: str | None = None) -> dict[str, Meters]:
    """Per tenant: gateway-days ((gateway, day) rows with batches) and egress bytes in the month."""
    first, end = parse_period(period)
    stmt = (select(_USAGE.c.tenant_id, _online(), func.sum(_USAGE.c.bytes))
            .where(_USAGE.c.day >= first, _USAGE.c.day < end).group_by(_USAGE.c.tenant_id))
    if tenant_id is not None:
        stmt = stmt.where(_USAGE.c.tenant_id == tenant_id)
    return {t: Meters(int(d or 0), int(b or 0)) for t, d, b in conn.execute(stmt)}


def monthly_meters(conn: Connection, first_period: str, end_period: str,
                   tenant_id: str | None = None) -> dict[tuple[str, str], Meters]:
    """(tenant, month) -> meters for the months in [first_period, end_period)."""
    month = func.substr(_USAGE.c.day, 1, 7)
    stmt = (select(_USAGE.c.tenant_id, month, _online(), func.sum(_USAGE.c.bytes))
            .where(_USAGE.c.day >= f"{first_period}-01", _USAGE.c.day < f"{end_period}-01")
            .group_by(_USAGE.c.tenant_id, month))
    if tenant_id is not None:
        stmt = stmt.where(_USAGE.c.tenant_id == tenant_id)
    return {(t, m): Meters(int(d or 0), int(b or 0)) for t, m, d, b in conn.execute(stmt)}


def billed(conn: Connection, tenant_id: str | None = None) -> dict[tuple[str, str], Meters]:
    """(tenant, usage month) -> the quantities billed so far for it (close + later adjustments)."""
    stmt = (select(_BILLED.c.tenant_id, _BILLED.c.usage_period, _BILLED.c.meter, func.sum(_BILLED.c.quantity))
            .group_by(_BILLED.c.tenant_id, _BILLED.c.usage_period, _BILLED.c.meter))
    if tenant_id is not None:
        stmt = stmt.where(_BILLED.c.tenant_id == tenant_id)
    out: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for t, p, m, q in conn.execute(stmt):
        out[(t, p)][m] = int(q or 0)
    return {k: Meters(v.get(RAW_GATEWAY_DAYS, 0), v.get(RAW_EGRESS_BYTES, 0)) for k, v in out.items()}


def daily(conn: Connection, tenant_id: str, period: str) -> list[DailyUsage]:
    first, end = parse_period(period)
    stmt = (select(_USAGE.c.day, _online(), func.sum(_USAGE.c.bytes))
            .where(_USAGE.c.tenant_id == tenant_id, _USAGE.c.day >= first, _USAGE.c.day < end)
            .group_by(_USAGE.c.day).order_by(_USAGE.c.day))
    found = list(conn.execute(stmt))
    return [DailyUsage(day=d, gateways_online=int(n or 0), egress_bytes=int(b or 0)) for d, n, b in found]


def closed_periods(conn: Connection) -> list[Closed]:
    """Every closed period, oldest first."""
    stmt = select(_PERIOD.c.period, _PERIOD.c.closed_at_ms, _PERIOD.c.plans).order_by(_PERIOD.c.period)
    return [Closed(p, int(at), plans) for p, at, plans in conn.execute(stmt)]


def frozen_lines(conn: Connection, period: str, tenant_id: str | None = None) -> list[ChargeLine]:
    stmt = select(_LINE).where(_LINE.c.period == period)
    if tenant_id is not None:
        stmt = stmt.where(_LINE.c.tenant_id == tenant_id)
    stmt = stmt.order_by(_LINE.c.tenant_name, _LINE.c.tenant_id, _LINE.c.position)
    found = list(conn.execute(stmt).mappings())
    return [ChargeLine(
        id=r["id"], tenant_id=r["tenant_id"], tenant=r["tenant_name"], period=r["period"], plan=r["plan"],
        meter=r["meter"], description=r["description"], quantity=Decimal(r["quantity"]),
        included=Decimal(r["included"]), billable=Decimal(r["billable"]), unit_price=Decimal(r["unit_price"]),
        amount=Decimal(r["amount"]), currency=r["currency"],
    ) for r in found]


def plans_at_close(conn: Connection, tenant_id: str | None = None) -> dict[tuple[str, str], str]:
    """(tenant, closed period) -> the plan the tenant was billed under."""
    stmt = select(_LINE.c.tenant_id, _LINE.c.period, _LINE.c.plan).where(_LINE.c.meter == "base")
    if tenant_id is not None:
        stmt = stmt.where(_LINE.c.tenant_id == tenant_id)
    return {(t, p): plan for t, p, plan in conn.execute(stmt)}
