"""Fleet views: gateways as the operator sees them (status, online, desired vs applied, converged).

Listings read the channel heads once for all their rows; one gateway reads its own two heads."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from controller import refusals
from controller.domain.errors import NotFound
from controller.domain.models import FleetStatus, Gateway, GatewayStatus, Versions
from controller.domain.names import validate_gateway_name
from controller.pki import CLIENT_VALIDITY
from controller.services.channels import desired, desired_from_heads, heads
from controller.services.tenants import tenant_row
from controller.store import models as rows
from controller.store.db import Database
from mssp.common.clock import now_ms

# Rows enrolled before renewal stored no validity: theirs is the lifetime certificates had then.
LEGACY_CERT_LIFETIME_MS = int(CLIENT_VALIDITY.total_seconds() * 1000)


def gateway_row(s: Session, tenant_name: str, name: str) -> tuple[rows.Tenant, rows.Gateway]:
    tenant = tenant_row(s, tenant_name)
    name = validate_gateway_name(name)
    gateway = s.exec(
        select(rows.Gateway).where(rows.Gateway.tenant_id == tenant.id, rows.Gateway.name == name)
    ).first()
    if gateway is None:
        raise NotFound(f"unknown gateway {tenant.name}/{name}")
    return tenant, gateway


def gateway_view(g: rows.Gateway, t: rows.Tenant, wanted: Versions, online_window_ms: int) -> Gateway:
    applied = Versions(global_seq=g.applied_global_seq, tenant_seq=g.applied_tenant_seq,
                       alliance_seq=g.applied_alliance_seq)
    status = GatewayStatus(g.status)
    enrolled = status == GatewayStatus.ENROLLED
    return Gateway(
        id=g.id, tenant=t.name, name=g.name, status=status, created_at_ms=g.created_at_ms,
        enrolled_at_ms=g.enrolled_at_ms, last_seen_ms=g.last_seen_ms,
        online=enrolled and now_ms() - g.last_seen_ms <= online_window_ms,
        desired=wanted, applied=applied,
        converged=enrolled and wanted == applied and not g.refusals_total,
        agent_version=g.agent_version, backend=g.backend, last_error=g.last_error,
        cert_serial=g.cert_serial or "", refusals=tuple(refusals.decode(g.refusals)),
        refusals_total=g.refusals_total, ioc_budget=g.ioc_budget, left_out_by_budget=g.left_out_by_budget,
        **_certificate(g, enrolled),
    )


def _certificate(g: rows.Gateway, enrolled: bool) -> dict[str, Any]:
    """Expiry and renewal state. Agents renew at 60-70% of the lifetime; past three quarters the
    renewal failed (or the agent cannot renew: older than renewal)."""
    if not enrolled:
        return {}
    not_before = g.cert_not_before_ms or g.enrolled_at_ms
    not_after = g.cert_not_after_ms or g.enrolled_at_ms + LEGACY_CERT_LIFETIME_MS
    overdue = now_ms() >= not_before + (not_after - not_before) * 3 // 4
    return {"cert_not_after_ms": not_after, "cert_renewed_at_ms": g.renewed_at_ms, "renewal_overdue": overdue,
            "clock_offset_ms": g.clock_offset_ms}


class Fleet:
    def __init__(self, db: Database, *, online_window_ms: int) -> None:
        self.db = db
        self.online_window_ms = online_window_ms

    def view(self, s: Session, g: rows.Gateway, t: rows.Tenant) -> Gateway:
        """One gateway, its desired versions read in `s` (also inside a write transaction)."""
        return gateway_view(g, t, desired(s, t.id), self.online_window_ms)

    def list_gateways(self, tenant_name: str | None = None) -> list[Gateway]:
        with self.db.session(readonly=True) as s:
            return self._listing(s, tenant_name)

    def get_gateway(self, tenant_name: str, name: str) -> Gateway:
        with self.db.session(readonly=True) as s:
            tenant, gateway = gateway_row(s, tenant_name, name)
            return self.view(s, gateway, tenant)

    def fleet_status(self, tenant_name: str | None = None) -> FleetStatus:
        with self.db.session(readonly=True) as s:
            gateways = tuple(g for g in self._listing(s, tenant_name) if g.status != GatewayStatus.REVOKED)
        return FleetStatus(
            gateways=gateways, total=len(gateways), online=sum(g.online for g in gateways),
            converged=sum(g.converged for g in gateways),
        )

    def gateway_names(self, tenant_id: str | None = None) -> dict[str, str]:
        """id -> name of every gateway (of one tenant if given), in one read; a retired record (see
        services/retire.py) by the name it had."""
        with self.db.session(readonly=True) as s:
            query = select(rows.Gateway.id, rows.Gateway.name, rows.Gateway.former_name)
            if tenant_id is not None:
                query = query.where(rows.Gateway.tenant_id == tenant_id)
            return {gid: former or name for gid, name, former in s.exec(query)}

    def _listing(self, s: Session, tenant_name: str | None) -> list[Gateway]:
        query = select(rows.Gateway, rows.Tenant).join(
            rows.Tenant, col(rows.Gateway.tenant_id) == col(rows.Tenant.id)
        ).where(rows.Gateway.retired_at_ms == 0, rows.Tenant.deleted_at_ms == 0)  # see services/retire.py
        if tenant_name:
            query = query.where(rows.Tenant.id == tenant_row(s, tenant_name).id)
        channel_heads = heads(s)
        return [
            gateway_view(g, t, desired_from_heads(channel_heads, t.id, t.sharing), self.online_window_ms)
            for g, t in s.exec(query.order_by(rows.Tenant.name, rows.Gateway.name)).all()
        ]
