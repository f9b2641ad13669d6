"""The one write path of policy documents: a tenant's policy, a gateway's override, a rollback.

One transaction takes the tenant's next policy version, stores the document, recompiles the tenant's
bundle (its policy and every override), records the version in the history and pushes the bundle on
the tenant channel. The version is a counter on the tenant row taken by a conditional UPDATE: the
UPDATE holds the row until commit, so concurrent writers get distinct versions, each is recorded,
and the bundle stored is the one pushed last (the tenant row is always locked before its channel).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from controller.domain.errors import InvalidInput, NotFound
from controller.domain.policy.changes import Facts, facts, summary
from controller.domain.policy.model import Policy
from controller.operators import acting_operator_name
from controller.services.channels import append_push
from controller.services.policy_bundles import compile_tenant_bundle, overrides_of
from controller.services.tenants import hold_tenant
from controller.store import models as rows
from controller.store.policy_models import PolicyOverride, PolicyVersion
from mssp.common.channels import tenant_channel
from mssp.common.clock import now_ms
from mssp.v1 import common_pb2


@dataclass(frozen=True)
class Stored:
    version: int
    seq: int
    bundle: common_pb2.PolicyBundle
    summary: str


def latest(s: Session, tenant_id: str, gateway_id: str) -> PolicyVersion | None:
    return s.exec(select(PolicyVersion).where(PolicyVersion.tenant_id == tenant_id,
                                              PolicyVersion.gateway_id == gateway_id)
                  .order_by(col(PolicyVersion.version).desc()).limit(1)).first()


def take_version(s: Session, tenant: rows.Tenant) -> int:
    bumped = s.exec(  # type: ignore[call-overload]
        update(rows.Tenant).where(col(rows.Tenant.id) == tenant.id, col(rows.Tenant.deleted_at_ms) == 0)
        .values(policy_version=col(rows.Tenant.policy_version) + 1)
    )
    if bumped.rowcount != 1:
        raise NotFound(f"unknown tenant {tenant.name!r}")
    s.refresh(tenant)
    return tenant.policy_version


def store_version(
    s: Session, tenant: rows.Tenant, gateway_id: str, text: str, *, policy: Policy | None = None,
    note: str = "",
) -> Stored:
    """Store `text` as the tenant's policy (gateway_id "") or a gateway's override ("" text: removed);
    `policy` is the parsed tenant policy when that is what changes. Raises before committing anything
    when the result does not compile."""
    version = take_version(s, tenant)
    if gateway_id and text and s.exec(select(rows.Gateway.retired_at_ms)
                                      .where(rows.Gateway.id == gateway_id)).first() != 0:
        raise NotFound("unknown gateway (it was deleted meanwhile)")
    previous = latest(s, tenant.id, gateway_id)
    at = now_ms()
    if not gateway_id:
        tenant.policy_yaml = text
    else:
        s.exec(delete(PolicyOverride).where(col(PolicyOverride.gateway_id) == gateway_id))
        if text:
            s.add(PolicyOverride(gateway_id=gateway_id, tenant_id=tenant.id, version=version, yaml=text,
                                 updated_at_ms=at))
        s.flush()
    bundle = compile_tenant_bundle(s, tenant, version, None if gateway_id else policy,
                                   overrides_of(s, tenant.id))
    tenant.policy_bundle = bundle.SerializeToString(deterministic=True)
    tenant.policy_updated_at_ms = at
    s.add(tenant)
    line = note + summary(_facts(previous, gateway_id), facts(text, gateway=bool(gateway_id)))
    s.add(PolicyVersion(tenant_id=tenant.id, gateway_id=gateway_id, version=version, yaml=text,
                        created_at_ms=at, created_by=acting_operator_name()[:63], summary=line[:300]))
    seq = append_push(s, tenant_channel(tenant.id), policy=bundle)
    return Stored(version, seq, bundle, line)


def _facts(row: PolicyVersion | None, gateway_id: str) -> Facts | None:
    """The previous version as compared (None: none, or a document today's validation refuses)."""
    if row is None:
        return None
    try:
        return facts(row.yaml, gateway=bool(gateway_id))
    except InvalidInput:
        return None


def drop_override(s: Session, tenant: rows.Tenant, gateway: rows.Gateway) -> bool:
    """Inside a gateway's deletion: its override goes (a version, pushed). False when it had none.
    The tenant row is locked before the override is read, so a concurrent `policy set` of that override
    either commits first (and is dropped here) or waits (and finds the gateway deleted)."""
    hold_tenant(s, tenant)
    if s.get(PolicyOverride, gateway.id) is None:
        return False
    store_version(s, tenant, gateway.id, "", note="gateway deleted; ")
    return True


def move_override(s: Session, tenant: rows.Tenant, old_id: str, new_id: str) -> bool:
    """A revoked gateway re-enrolled as a new identity (a new gateway id) keeps its override (a version,
    pushed). False when it had none."""
    override = s.get(PolicyOverride, old_id)
    if override is None:
        return False
    text = override.yaml
    s.exec(delete(PolicyOverride).where(col(PolicyOverride.gateway_id) == old_id))
    store_version(s, tenant, new_id, text, note="kept for the gateway's new identity; ")
    return True
