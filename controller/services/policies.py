"""Tenant policies: a YAML document, validated and compiled to the bundle gateways enforce, pushed
on the tenant's channel in the transaction that stores it."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from controller.domain.models import PolicyInfo
from controller.domain.policy.bundle import policy_to_bundle
from controller.domain.policy.yaml_reader import DEFAULT_POLICY_YAML, parse_policy_yaml
from controller.services.channels import append_push
from controller.services.tenants import tenant_row
from controller.store import models as rows
from controller.store.db import Database
from controller.store.sighting_models import FalsePositive
from mssp.common.channels import tenant_channel
from mssp.common.clock import now_ms

# What a tenant without a policy of its own is shown (version 0): the default, compiled once.
DEFAULT_BUNDLE = policy_to_bundle(parse_policy_yaml(DEFAULT_POLICY_YAML), 0).SerializeToString(
    deterministic=True
)


def exempt_values(s: Session, tenant_id: str) -> list[str]:
    """Shared indicators the tenant reported as false positives (services/false_positives.py)."""
    return sorted(s.exec(select(FalsePositive.value).where(FalsePositive.tenant_id == tenant_id)))


def policy_info(t: rows.Tenant, seq: int = 0) -> PolicyInfo:
    if not t.policy_version:
        return PolicyInfo(tenant=t.name, version=0, yaml=DEFAULT_POLICY_YAML, bundle=DEFAULT_BUNDLE)
    return PolicyInfo(tenant=t.name, version=t.policy_version, yaml=t.policy_yaml, bundle=t.policy_bundle,
                      updated_at_ms=t.policy_updated_at_ms, seq=seq)


class Policies:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set_policy(self, tenant_name: str, text: str) -> PolicyInfo:
        policy = parse_policy_yaml(text)  # before any write: a bad document changes nothing
        with self.db.session() as s:
            tenant = tenant_row(s, tenant_name)
            # The version is a counter on the tenant row, taken like a channel seq: the UPDATE holds
            # the row until commit, so concurrent writers get distinct versions and the stored document
            # is the one pushed last (the tenant row is always locked before its channel row).
            s.exec(  # type: ignore[call-overload]
                update(rows.Tenant).where(col(rows.Tenant.id) == tenant.id)
                .values(policy_version=col(rows.Tenant.policy_version) + 1)
            )
            s.refresh(tenant)
            version = tenant.policy_version
            bundle = policy_to_bundle(policy, version)
            bundle.exempt.extend(exempt_values(s, tenant.id))  # the tenant's false positives stay exempt
            tenant.policy_version = version
            tenant.policy_yaml = text
            tenant.policy_bundle = bundle.SerializeToString(deterministic=True)
            tenant.policy_updated_at_ms = now_ms()
            s.add(tenant)
            seq = append_push(s, tenant_channel(tenant.id), policy=bundle)
            return policy_info(tenant, seq)

    def get_policy(self, tenant_name: str) -> PolicyInfo:
        with self.db.session(readonly=True) as s:
            return policy_info(tenant_row(s, tenant_name))
