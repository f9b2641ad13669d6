"""Closing (freezing) a billing month.

One time only, under concurrency, on SQLite and PostgreSQL alike: the INSERT of the period's
`billing_period` row (its primary key) is in the same transaction as its lines and raw quantities,
so a second close of the same month either sees the row (SQLite writers are serialized) or fails on
the key after the first commits (PostgreSQL), and never writes lines twice.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from controller.billing.charges import plain
from controller.domain.errors import Conflict
from controller.domain.reporting import ChargeLine
from controller.store.account_models import BillingLine, BillingPeriod, BillingUsage
from controller.store.db import Database
from controller.telemetry.queries import next_period, period_bounds

_PERIOD = BillingPeriod.__table__  # type: ignore[attr-defined]
_LINE = BillingLine.__table__  # type: ignore[attr-defined]
_BILLED = BillingUsage.__table__  # type: ignore[attr-defined]


class UsageRow(NamedTuple):
    tenant_id: str
    usage_period: str
    meter: str  # gateway_days | egress_bytes
    billed_in: str
    quantity: int


def check_closable(period: str, closed: list[str], now: int) -> None:
    """Conflict unless `period` is over (UTC) and is the month after the latest closed one (any
    finished month for the first close)."""
    if period in closed:
        raise Conflict(f"billing period {period} is already closed")
    _first, end, _start, end_ms = period_bounds(period)
    if end_ms > now:
        raise Conflict(f"cannot close {period}: the month is not over yet (it ends {end} 00:00 UTC)")
    if closed:
        latest = max(closed)
        following = next_period(latest)
        if period < latest:
            raise Conflict(f"cannot close {period}: periods close in order and {latest} is already closed; "
                           f"the next period to close is {following}")
        if period != following:
            raise Conflict(f"cannot close {period}: periods close in order; close {following} first "
                           f"(the latest closed period is {latest})")


def missing_plans_error(period: str, source: str, tenants: list[str]) -> Conflict:
    return Conflict(f"cannot close {period}: {source} defines no plan for tenant(s) {', '.join(tenants)}; "
                    f"add the plan(s) or change the tenants' plans first")


def line_row(line: ChargeLine, position: int) -> dict[str, object]:
    return {
        "id": line.id, "period": line.period, "tenant_id": line.tenant_id, "tenant_name": line.tenant,
        "plan": line.plan, "meter": line.meter, "description": line.description[:200],
        "quantity": plain(line.quantity), "included": plain(line.included), "billable": plain(line.billable),
        "unit_price": plain(line.unit_price), "amount": plain(line.amount), "currency": line.currency,
        "position": position,
    }


def freeze(db: Database, period: str, lines: list[ChargeLine], usage: list[UsageRow], plans_json: str,
           now: int) -> None:
    """Write the period, its lines and its raw quantities in one transaction."""
    positions: dict[str, int] = {}
    line_rows = []
    for line in lines:
        pos = positions[line.tenant_id] = positions.get(line.tenant_id, -1) + 1
        line_rows.append(line_row(line, pos))
    try:
        with db.session() as s:
            done = [p for (p,) in s.execute(select(_PERIOD.c.period))]
            check_closable(period, done, now)
            s.execute(insert(_PERIOD).values(period=period, closed_at_ms=now, plans=plans_json))
            if line_rows:
                s.execute(insert(_LINE), line_rows)
            if usage:
                s.execute(insert(_BILLED), [u._asdict() for u in usage])
    except IntegrityError:
        raise Conflict(f"billing period {period} is already closed") from None
