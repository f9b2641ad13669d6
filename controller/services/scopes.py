"""Scopes as the operator writes them (``global``, ``alliance``, ``tenant:NAME``) and the channels
that carry them."""

from __future__ import annotations

from sqlmodel import Session, select

from controller.domain.ioc_meta import Scope
from controller.services.tenants import tenant_row
from controller.store import models as rows
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL, tenant_channel


def scope_channel(s: Session, scope: Scope) -> str:
    if scope.alliance:
        return ALLIANCE_CHANNEL
    if scope.tenant is None:
        return GLOBAL_CHANNEL
    return tenant_channel(tenant_row(s, scope.tenant).id)


def scope_names(s: Session) -> dict[str, str]:
    """channel -> scope as the operator writes it, for every scope an operator can see."""
    live = select(rows.Tenant).where(rows.Tenant.deleted_at_ms == 0)
    names = {tenant_channel(t.id): f"tenant:{t.name}" for t in s.exec(live)}
    names[GLOBAL_CHANNEL] = "global"
    names[ALLIANCE_CHANNEL] = "alliance"
    return names
