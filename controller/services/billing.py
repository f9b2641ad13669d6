"""Billing for the MSSP and the tenant API: usage statements, the per-tenant charge export and
closing a month.

An open month is computed from telemetry on every call; a closed one is read back from the lines
frozen at close (never recomputed: the plan book in force is snapshotted with it). Telemetry that
arrives late for a closed month shows up as adjustment lines in the first open month after the
latest closed one, and closing that month freezes them, so nothing is billed twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Connection

from controller.billing import closing, meters
from controller.billing.charges import (
    EGRESS_GB,
    GATEWAY_DAYS,
    GB,
    RAW_METERS,
    Meters,
    adjustment_line,
    charge_lines,
    included_gateway_days,
    total,
)
from controller.billing.plans import Plan, PlanBook, load_plans
from controller.domain.errors import InvalidInput, NotFound
from controller.domain.reporting import ChargeLine, DailyUsage, UsageStatement
from controller.store.db import Database
from controller.telemetry.queries import next_period, parse_period
from mssp.common.clock import now_ms

Export = tuple[list[ChargeLine], bool, int, list[str]]


def check_period(period: str) -> str:
    """A UTC month YYYY-MM between 1970-01 and 2999-12."""
    parse_period(period)
    period = period.strip()
    if not 1970 <= int(period[:4]) <= 2999:
        raise InvalidInput(f"billing period must be between 1970-01 and 2999-12, got {period!r}")
    return period


@dataclass
class TenantDraft:
    tenant: meters.TenantRef
    plan: Plan | None
    meters: Meters
    lines: list[ChargeLine] = field(default_factory=list)


@dataclass
class Draft:
    """An open period as it would be frozen now."""

    period: str
    book: PlanBook
    tenants: dict[str, TenantDraft]
    warnings: list[str]
    usage_rows: list[closing.UsageRow]
    missing_plans: list[str]  # "tenant (plan)"

    @property
    def lines(self) -> list[ChargeLine]:
        ordered = sorted(self.tenants.values(), key=lambda d: (d.tenant.name, d.tenant.id))
        return [line for d in ordered for line in d.lines]


class Billing:
    def __init__(self, db: Database, plans_path: Path | None = None) -> None:
        self.db = db
        self.plans_path = plans_path
        self._lock = threading.Lock()
        self._cached: tuple[object, PlanBook] | None = None

    def plan_book(self) -> PlanBook:
        """The plan book in force (re-read when the file changes; InvalidInput when it is malformed)."""
        path = self.plans_path
        try:
            st = path.stat() if path is not None else None
            stamp: object = (st.st_mtime_ns, st.st_size, st.st_ino) if st else None
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if self._cached is not None and self._cached[0] == stamp:
                return self._cached[1]
        book = load_plans(path)
        with self._lock:
            self._cached = (stamp, book)
        return book

    # -- reading -------------------------------------------------------------------------------

    def usage(self, tenant_id: str, period: str) -> UsageStatement:
        period = check_period(period)
        with self.db.read_engine.connect() as conn:  # one snapshot, one pool checkout
            found = meters.tenants(conn, tenant_id)
            if tenant_id not in found:
                raise NotFound(f"unknown tenant id {tenant_id!r}")
            ref = found[tenant_id]
            daily = tuple(meters.daily(conn, tenant_id, period))
            closed_list = meters.closed_periods(conn)
            closed = {c.period: c for c in closed_list}
            if period in closed:
                return self._closed_statement(conn, ref, closed[period], daily)
            # The month's meters are the daily series summed: no second query over the same rows.
            used = {tenant_id: Meters(sum(d.gateways_online for d in daily),
                                      sum(d.egress_bytes for d in daily))}
            draft = self._draft(conn, period, tenant_id, closed=closed_list, refs=found, used=used)
        d = draft.tenants[tenant_id]
        plan = d.plan
        return UsageStatement(
            tenant_id=ref.id, tenant=ref.name, period=period, closed=False, plan=ref.plan,
            currency=draft.book.currency, gateway_days=d.meters.gateway_days,
            egress_bytes=d.meters.egress_bytes,
            included_gateway_days=included_gateway_days(plan, period) if plan else 0,
            included_egress_bytes=int(plan.included_egress_gb * GB) if plan else 0,
            lines=tuple(d.lines), total=total(d.lines), daily=daily, warnings=tuple(draft.warnings),
        )

    def _closed_statement(self, conn: Connection, ref: meters.TenantRef, closed: meters.Closed,
                          daily: tuple[DailyUsage, ...]) -> UsageStatement:
        lines = meters.frozen_lines(conn, closed.period, ref.id)
        by_meter = {line.meter: line for line in lines}
        warnings: tuple[str, ...] = ()
        if not lines:
            warnings = (f"no charges were frozen for tenant {ref.name!r} when {closed.period} was closed",)
        gd, eg = by_meter.get(GATEWAY_DAYS), by_meter.get(EGRESS_GB)
        currency = lines[0].currency if lines else PlanBook.from_json(closed.plans).currency
        return UsageStatement(
            tenant_id=ref.id, tenant=ref.name, period=closed.period, closed=True,
            plan=lines[0].plan if lines else ref.plan, currency=currency,
            gateway_days=int(gd.quantity) if gd else 0, egress_bytes=int(eg.quantity * GB) if eg else 0,
            included_gateway_days=int(gd.included) if gd else 0,
            included_egress_bytes=int(eg.included * GB) if eg else 0,
            lines=tuple(lines), total=total(lines), daily=daily, warnings=warnings,
        )

    def export(self, period: str) -> Export:
        """Every tenant's charge lines for the month: frozen ones if it is closed, else computed now."""
        period = check_period(period)
        with self.db.read_engine.connect() as conn:
            closed_list = meters.closed_periods(conn)
            closed = {c.period: c for c in closed_list}
            if period in closed:
                return meters.frozen_lines(conn, period), True, closed[period].closed_at_ms, []
            draft = self._draft(conn, period, closed=closed_list)
        return draft.lines, False, 0, list(draft.warnings)

    # -- closing -------------------------------------------------------------------------------

    def close(self, period: str, *, at_ms: int | None = None) -> Export:
        """Freeze `period` (a finished month, the one after the latest closed): one time only, even
        when two operators close it at once."""
        period = check_period(period)
        now = now_ms() if at_ms is None else at_ms
        with self.db.read_engine.connect() as conn:
            closed = meters.closed_periods(conn)
            closing.check_closable(period, [c.period for c in closed], now)
            draft = self._draft(conn, period, closed=closed)
        if draft.missing_plans:
            raise closing.missing_plans_error(period, draft.book.source, draft.missing_plans)
        closing.freeze(self.db, period, draft.lines, draft.usage_rows, draft.book.to_json(), now)
        return self.export(period)

    # -- the open computation ------------------------------------------------------------------

    def _draft(self, conn: Connection, period: str, tenant_id: str | None = None, *,
               closed: list[meters.Closed], refs: dict[str, meters.TenantRef] | None = None,
               used: dict[str, Meters] | None = None) -> Draft:
        """The lines of an open `period`, for one tenant or all. Every live tenant is billed (the one
        asked for by `tenant_id` even if deleted), a deleted one only if it has usage."""
        book = self.plan_book()
        refs = meters.tenants(conn, tenant_id) if refs is None else refs
        used = meters.meters(conn, period, tenant_id) if used is None else used
        drafts: dict[str, TenantDraft] = {}
        warnings: list[str] = []
        rows: list[closing.UsageRow] = []
        missing: list[str] = []
        for ref in sorted(refs.values(), key=lambda r: (r.name, r.id)):
            m = used.get(ref.id, Meters())
            if ref.deleted and tenant_id is None and m == Meters():
                continue
            plan = book.get(ref.plan)
            d = drafts[ref.id] = TenantDraft(ref, plan, m)
            if plan is None:
                warnings.append(f"tenant {ref.name!r} has plan {ref.plan!r}, which {book.source} does not "
                                f"define: no charges computed")
                missing.append(f"{ref.name} ({ref.plan})")
                continue
            d.lines = charge_lines(ref.id, ref.name, period, plan, book.currency, m)
            rows.extend(closing.UsageRow(ref.id, period, raw, period, m.raw(raw)) for raw in RAW_METERS)
        self._adjustments(conn, closed, period, refs, drafts, warnings, rows, tenant_id)
        return Draft(period, book, drafts, warnings, rows, missing)

    def _adjustments(self, conn: Connection, closed: list[meters.Closed], period: str,
                     refs: dict[str, meters.TenantRef], drafts: dict[str, TenantDraft], warnings: list[str],
                     rows: list[closing.UsageRow], tenant_id: str | None) -> None:
        """Late telemetry for closed months, if `period` is the first open month after them."""
        if not closed or next_period(closed[-1].period) != period:
            return
        books = {c.period: c.plans for c in closed}
        current = meters.monthly_meters(conn, closed[0].period, period, tenant_id)
        billed = meters.billed(conn, tenant_id)
        plans_then = meters.plans_at_close(conn, tenant_id)
        parsed: dict[str, PlanBook] = {}
        for (tid, month), now_m in sorted(current.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            ref = refs.get(tid)
            if month not in books or ref is None:
                continue
            was = billed.get((tid, month), Meters())
            deltas = {raw: now_m.raw(raw) - was.raw(raw) for raw in RAW_METERS}
            if all(delta <= 0 for delta in deltas.values()):  # only late arrivals add; purges never credit
                continue
            if month not in parsed:
                parsed[month] = PlanBook.from_json(books[month], f"the plans frozen with {month}")
            book = parsed[month]
            plan_name = plans_then.get((tid, month), ref.plan)
            plan = book.get(plan_name)
            if plan is None:
                warnings.append(f"late telemetry for {month} of tenant {ref.name!r} not billed: plan "
                                f"{plan_name!r} is not in the plans frozen with {month}")
                continue
            d = drafts.setdefault(tid, TenantDraft(ref, None, Meters()))
            for raw, delta in deltas.items():
                if delta > 0:
                    d.lines.append(adjustment_line(tid, ref.name, period, month, plan, book.currency,
                                                   raw, was.raw(raw), delta))
                    rows.append(closing.UsageRow(tid, month, raw, period, delta))
