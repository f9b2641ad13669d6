"""What one tenant may read, and nothing else: the service layer behind the tenant API.

A TenantScope is made for the tenant id an API key is bound to; every query below carries that id
in its WHERE clause, so an object of another tenant is "not found" whatever id or cursor the caller
sends (BOLA is closed here, not only in the routes). Gateway state (online, converged) comes from
the fleet view (controller/services/fleet.py), so the tenant sees what the operator sees.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import and_, func, or_, select
from sqlmodel import Session, col

from controller.domain.errors import InvalidInput, NotFound
from controller.domain.models import GatewayStatus
from controller.domain.pagination import check_limit, decode_cursor, encode_cursor
from controller.domain.reporting import GatewayReport, Page, SecurityReport, TenantSummary, UsageStatement
from controller.services.billing import check_period
from controller.services.channels import desired
from controller.services.false_positives import FalsePositiveResult
from controller.services.fleet import gateway_view
from controller.services.shared_indicators import SharedIndicator, shared_page, shared_value
from controller.store import models as rows
from controller.telemetry.bounds import open_since_ms
from controller.telemetry.models import DetectionEvent, UsageDaily
from controller.telemetry.queries import Alert, alert_from_row, parse_period, period_bounds
from mssp.common.clock import now_ms

if TYPE_CHECKING:
    from controller.service import ControllerService

T = TypeVar("T")
REPORT_FORMATS = ("html", "pdf")
# An open month's figures are cached for ControllerService.read_cache_seconds (telemetry lands in
# 30 s batches); a final month (closed to billing, or to ingest for a security report) for an hour:
# only retention or a plan-book reload would change it.
FINAL_TTL_SECONDS = 3600.0
MAX_ID_CHARS = 64
_USAGE = UsageDaily.__table__  # type: ignore[attr-defined]
_EVENT = DetectionEvent.__table__  # type: ignore[attr-defined]
_ID_RE = re.compile(r"[0-9a-f]{1,64}")


def current_period(at_ms: int | None = None) -> str:
    day = dt.datetime.fromtimestamp((now_ms() if at_ms is None else at_ms) / 1000, tz=dt.UTC)
    return f"{day.year:04d}-{day.month:02d}"


def closed_to_ingest(period: str) -> bool:
    """True once no telemetry batch may land in `period` any more (controller/telemetry/bounds.py)."""
    return period_bounds(period)[3] <= open_since_ms(now_ms())


class TenantScope:
    def __init__(self, service: ControllerService, tenant_id: str) -> None:
        if not tenant_id:
            raise InvalidInput("a tenant scope needs a tenant id")
        self.service = service
        self.db = service.db
        self.tenant_id = tenant_id

    # -- the tenant ----------------------------------------------------------------------------

    def _tenant_row(self, s: Session) -> rows.Tenant:
        tenant = s.get(rows.Tenant, self.tenant_id)
        if tenant is None or tenant.deleted_at_ms:
            raise NotFound("this API key's tenant no longer exists")
        return tenant

    def tenant(self) -> TenantSummary:
        with self.db.session(readonly=True) as s:
            t = self._tenant_row(s)
            count = s.execute(
                select(func.count()).select_from(rows.Gateway).where(
                    col(rows.Gateway.tenant_id) == self.tenant_id, col(rows.Gateway.retired_at_ms) == 0,
                    col(rows.Gateway.status) != GatewayStatus.REVOKED.value)
            ).scalar_one()
        return TenantSummary(id=t.id, name=t.name, plan=t.plan, gateway_count=int(count),
                             sharing="alliance" if t.sharing else "none")

    def shared_indicators(self, limit: int | None = None,
                          cursor: str | None = None) -> tuple[list[SharedIndicator], str | None]:
        """The alliance's indicators, anonymous (controller/services/shared_indicators.py)."""
        return shared_page(self.db, self.tenant_id, limit, cursor, self.service.sightings.policy.k)

    def report_false_positive(self, indicator_id: str) -> FalsePositiveResult:
        """`indicator_id` from shared_indicators(); another list's id is as unknown as a missing one."""
        value = shared_value(self.db, self.tenant_id, indicator_id)
        return self.service.false_positives.report(self.tenant_id, value, by="tenant")

    # -- gateways ------------------------------------------------------------------------------

    def gateways(self, period: str | None = None, limit: int | None = None,
                 cursor: str | None = None) -> Page[GatewayReport]:
        """By name, then id (the unique tie-breaker), `limit` at a time."""
        period = self._period(period)
        limit = check_limit(limit)
        after = decode_cursor(cursor, "gateways", self.tenant_id, (str, str))
        query = select(rows.Gateway).where(
            col(rows.Gateway.tenant_id) == self.tenant_id, col(rows.Gateway.retired_at_ms) == 0)
        if after is not None:
            name, gid = after
            query = query.where(or_(col(rows.Gateway.name) > name,
                                    and_(col(rows.Gateway.name) == name, col(rows.Gateway.id) > gid)))
        query = query.order_by(col(rows.Gateway.name), col(rows.Gateway.id)).limit(limit + 1)
        with self.db.session(readonly=True) as s:
            tenant = self._tenant_row(s)
            found = list(s.execute(query).scalars())
            page = found[:limit]
            reports = self._reports(s, tenant, page, period)
        nxt = (encode_cursor("gateways", self.tenant_id, (page[-1].name, page[-1].id))
               if len(found) > limit else None)
        return Page(items=tuple(reports), next_cursor=nxt)

    def gateway(self, gateway_id: str, period: str | None = None) -> GatewayReport:
        period = self._period(period)
        if not isinstance(gateway_id, str) or not _ID_RE.fullmatch(gateway_id):
            raise NotFound(f"unknown gateway {str(gateway_id)[:MAX_ID_CHARS]!r}")
        with self.db.session(readonly=True) as s:
            tenant = self._tenant_row(s)
            row = s.execute(select(rows.Gateway).where(
                col(rows.Gateway.id) == gateway_id, col(rows.Gateway.tenant_id) == self.tenant_id,
                col(rows.Gateway.retired_at_ms) == 0)).scalars().first()
            if row is None:  # another tenant's gateway is exactly as unknown as a missing one
                raise NotFound(f"unknown gateway {gateway_id!r}")
            return self._reports(s, tenant, [row], period)[0]

    def gateway_names(self) -> dict[str, str]:
        return self.service.fleet.gateway_names(self.tenant_id)

    def _reports(self, s: Session, tenant: rows.Tenant, gateways: list[rows.Gateway],
                 period: str) -> list[GatewayReport]:
        if not gateways:
            return []
        first, end = parse_period(period)
        online = dict(s.execute(
            select(_USAGE.c.gateway_id, func.sum(_USAGE.c.online))
            .where(_USAGE.c.tenant_id == self.tenant_id, _USAGE.c.day >= first, _USAGE.c.day < end,
                   _USAGE.c.gateway_id.in_([g.id for g in gateways]))
            .group_by(_USAGE.c.gateway_id)).all())
        wanted = desired(s, self.tenant_id)
        window = self.service.fleet.online_window_ms
        out = []
        for g in gateways:
            view = gateway_view(g, tenant, wanted, window)
            out.append(GatewayReport(
                id=view.id, name=view.name, status=view.status.value,
                desired_global_seq=view.desired.global_seq, desired_tenant_seq=view.desired.tenant_seq,
                applied_global_seq=view.applied.global_seq, applied_tenant_seq=view.applied.tenant_seq,
                converged=view.converged, online=view.online, last_seen_ms=view.last_seen_ms,
                agent_version=view.agent_version, period=period,
                online_seconds=int(online.get(g.id) or 0),
            ))
        return out

    # -- usage and reports (billing and controller/reports/, both by tenant id) ---------------------

    def usage(self, period: str | None = None) -> UsageStatement:
        period = self._period(period)
        billing = self.service.billing
        return self._cached("usage", period, lambda statement: statement.closed,
                            lambda: billing.usage(self.tenant_id, period))

    def security_report(self, period: str | None = None) -> SecurityReport:
        from controller.reports.security import security_report

        period = self._period(period)
        final = closed_to_ingest(period)
        return self._cached("security", period, lambda _report: final,
                            lambda: security_report(self.db, self.tenant_id, period))

    def _cached(self, what: str, period: str, final: Callable[[T], bool], compute: Callable[[], T]) -> T:
        """`final(value)`: whether the value can no longer change (kept FINAL_TTL_SECONDS)."""
        ttl = self.service.read_cache_seconds
        if ttl <= 0:
            return compute()
        return self.service.read_cache.get(
            (self.tenant_id, what, period), lambda value: FINAL_TTL_SECONDS if final(value) else ttl, compute)

    def monthly_report(self, period: str, fmt: str = "html") -> str | bytes:
        from controller.reports.render import monthly_html, monthly_pdf

        period = check_period(period)
        if fmt not in REPORT_FORMATS:
            raise InvalidInput(f"report format must be one of {', '.join(REPORT_FORMATS)}, got {fmt[:20]!r}")
        render = monthly_pdf if fmt == "pdf" else monthly_html
        return render(self.db, self.service.billing, self.tenant_id, period)

    # -- alerts --------------------------------------------------------------------------------

    def alerts(self, since_ms: int = 0, limit: int | None = None, cursor: str | None = None) -> Page[Alert]:
        """Newest first; ties on the time broken by id (unique)."""
        limit = check_limit(limit)
        if since_ms < 0:
            raise InvalidInput("since must not be negative")
        after = decode_cursor(cursor, "alerts", self.tenant_id, (int, str))
        stmt = select(_EVENT).where(_EVENT.c.tenant_id == self.tenant_id, _EVENT.c.at_ms >= since_ms)
        if after is not None:
            at, aid = after
            stmt = stmt.where(or_(_EVENT.c.at_ms < at, and_(_EVENT.c.at_ms == at, _EVENT.c.id > aid)))
        stmt = stmt.order_by(_EVENT.c.at_ms.desc(), _EVENT.c.id).limit(limit + 1)
        with self.db.read_engine.connect() as conn:
            found = list(conn.execute(stmt).mappings())
        page = [alert_from_row(r) for r in found[:limit]]
        nxt = (encode_cursor("alerts", self.tenant_id, (page[-1].at_ms, page[-1].id))
               if len(found) > limit else None)
        return Page(items=tuple(page), next_cursor=nxt)

    def _period(self, period: str | None) -> str:
        """The given month, or the current one when none is given."""
        return check_period(period) if period else current_period()

