"""Tenants: create, look up, re-plan, delete, and what other aggregates need of them (the row by
name, names by id).

A deleted tenant is hidden from every view and lookup; its data stays for the retention period and
its name stays reserved (creating it again is refused) so that history read by name is never mixed
with a new customer's."""

from __future__ import annotations

import uuid

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from controller.domain.errors import AlreadyExists, NotFound
from controller.domain.models import GatewayStatus, Tenant
from controller.domain.names import validate_plan, validate_tenant_name
from controller.services.channels import head
from controller.services.retire import revoke_row
from controller.store import models as rows
from controller.store.db import Database
from mssp.common.channels import tenant_channel
from mssp.common.clock import now_ms
from mssp.v1 import common_pb2


def new_id() -> str:
    return uuid.uuid4().hex


def tenant_row(s: Session, name: str) -> rows.Tenant:
    """The tenant named `name` (validated first), or NotFound."""
    name = validate_tenant_name(name)
    tenant = s.exec(
        select(rows.Tenant).where(rows.Tenant.name == name, rows.Tenant.deleted_at_ms == 0)
    ).first()
    if tenant is None:
        raise NotFound(f"unknown tenant {name!r}")
    return tenant


def hold_tenant(s: Session, tenant: rows.Tenant) -> None:
    """Lock the tenant's row while adding to it, if it is not deleted: a conditional no-op UPDATE,
    so a concurrent `tenant delete` either waits for this write (and revokes what it added) or has
    committed first (NotFound here)."""
    held = s.exec(  # type: ignore[call-overload]
        update(rows.Tenant).where(col(rows.Tenant.id) == tenant.id, col(rows.Tenant.deleted_at_ms) == 0)
        .values(deleted_at_ms=0)
    )
    if held.rowcount != 1:
        raise NotFound(f"unknown tenant {tenant.name!r}")


def tenant_view(s: Session, t: rows.Tenant) -> Tenant:
    channel = tenant_channel(t.id)
    gateways = s.exec(
        select(func.count()).select_from(rows.Gateway)
        .where(rows.Gateway.tenant_id == t.id, rows.Gateway.status != GatewayStatus.REVOKED.value)
    ).one()
    iocs = s.exec(select(func.count()).select_from(rows.Ioc).where(rows.Ioc.channel == channel)).one()
    return Tenant(
        id=t.id, name=t.name, plan=t.plan, created_at_ms=t.created_at_ms, gateway_count=gateways,
        policy_version=t.policy_version, tenant_seq=head(s, channel), ioc_count=iocs, sharing=t.sharing,
    )


class Tenants:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_tenant(self, name: str, plan: str | None = None) -> Tenant:
        name = validate_tenant_name(name)
        plan = validate_plan(plan or None)
        with self.db.session() as s:
            existing = s.exec(select(rows.Tenant).where(rows.Tenant.name == name)).first()
            if existing is not None and existing.deleted_at_ms:
                raise AlreadyExists(f"tenant {name!r} was deleted; its name stays reserved while its data "
                                    "is kept (retention period)")
            if existing is not None:
                raise AlreadyExists(f"tenant {name!r} already exists")
            tenant = rows.Tenant(id=new_id(), name=name, plan=plan, created_at_ms=now_ms())
            s.add(tenant)
            s.add(rows.Channel(name=tenant_channel(tenant.id), seq=0))
            s.flush()
            return tenant_view(s, tenant)

    def list_tenants(self) -> list[Tenant]:
        with self.db.session(readonly=True) as s:
            listing = select(rows.Tenant).where(rows.Tenant.deleted_at_ms == 0).order_by(rows.Tenant.name)
            return [tenant_view(s, t) for t in s.exec(listing)]

    def get_tenant(self, name: str) -> Tenant:
        with self.db.session(readonly=True) as s:
            return tenant_view(s, tenant_row(s, name))

    def set_plan(self, name: str, plan: str) -> Tenant:
        """Plans are validated as `tenant create` does; the plan is required here."""
        plan = validate_plan(plan)
        with self.db.session() as s:
            tenant = tenant_row(s, name)
            tenant.plan = plan
            s.add(tenant)
            s.flush()
            return tenant_view(s, tenant)

    def delete_tenant(self, name: str) -> tuple[Tenant, int, list[str]]:
        """Revoke every gateway of the tenant and mark it deleted, in one transaction; how many were
        revoked and the NATS keys the caller must revoke on the broker. Deleted once: a racer that
        loses gets NotFound."""
        with self.db.session() as s:
            tenant = tenant_row(s, name)
            moved = s.exec(  # type: ignore[call-overload]
                update(rows.Tenant)
                .where(col(rows.Tenant.id) == tenant.id, col(rows.Tenant.deleted_at_ms) == 0)
                .values(deleted_at_ms=now_ms())
            )
            if moved.rowcount != 1:
                raise NotFound(f"unknown tenant {tenant.name!r}")
            live = s.exec(select(rows.Gateway).where(
                rows.Gateway.tenant_id == tenant.id, rows.Gateway.status != GatewayStatus.REVOKED.value
            )).all()
            revoked = [g for g in live if revoke_row(s, g)]
            s.refresh(tenant)
            keys = [g.nats_public_key for g in revoked if g.nats_public_key]
            return tenant_view(s, tenant), len(revoked), keys

    def tenant_id(self, name: str) -> str:
        """The id of the tenant named `name` (NotFound else): one indexed read, no counts."""
        with self.db.session(readonly=True) as s:
            return tenant_row(s, name).id

    def tenant_names(self) -> dict[str, str]:
        """id -> name of every tenant, in one read (what the telemetry views label rows with)."""
        with self.db.session(readonly=True) as s:
            return {tid: name for tid, name in s.exec(select(rows.Tenant.id, rows.Tenant.name))}

    def upload_thresholds(self, tenant_id: str) -> list[tuple[str, int]]:
        """(category, bytes per day) from the tenant's policy; read by the telemetry alerting, inside
        the fold's write transaction: read-only, or on SQLite it would wait for its own caller's lock."""
        with self.db.session(readonly=True) as s:
            tenant = s.get(rows.Tenant, tenant_id)
            if tenant is None or not tenant.policy_bundle:
                return []
            bundle = common_pb2.PolicyBundle.FromString(tenant.policy_bundle)
            return [(t.category, t.bytes_per_day) for t in bundle.upload_thresholds]
