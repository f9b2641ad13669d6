"""Tenant policies and per-gateway overrides: YAML documents, validated and compiled to the bundle
gateways enforce, stored as a new version and pushed on the tenant's channel in one transaction
(controller/services/policy_versions.py). History, diffs, rollbacks and dry runs:
controller/services/policy_history.py."""

from __future__ import annotations

from sqlmodel import Session

from controller.domain.errors import NotFound
from controller.domain.models import PolicyInfo
from controller.domain.policy.bundle import policy_to_bundle
from controller.domain.policy.changes import policy_yaml
from controller.domain.policy.merge import effective_policy, read_override
from controller.domain.policy.yaml_reader import DEFAULT_POLICY_YAML, parse_policy_yaml
from controller.services.fleet import gateway_row
from controller.services.policy_bundles import exempt_values, tenant_policy
from controller.services.policy_versions import latest, store_version
from controller.services.tenants import hold_tenant, tenant_row
from controller.store import models as rows
from controller.store.db import Database
from controller.store.policy_models import PolicyOverride
from mssp.v1 import common_pb2

__all__ = ["DEFAULT_BUNDLE", "Policies", "exempt_values", "policy_info"]

# What a tenant without a policy of its own is shown (version 0): the default, compiled once.
DEFAULT_BUNDLE = policy_to_bundle(parse_policy_yaml(DEFAULT_POLICY_YAML), 0).SerializeToString(
    deterministic=True
)


def policy_info(
    t: rows.Tenant, seq: int = 0, summary: str = "", version: int = 0, at_ms: int = 0
) -> PolicyInfo:
    """The tenant's policy: version 0 and the default when none was set (its bundle may still carry
    gateways' overrides); `version`/`at_ms`: its document's, when later versions were overrides'."""
    if not t.policy_yaml:
        return PolicyInfo(tenant=t.name, version=0, yaml=DEFAULT_POLICY_YAML,
                          bundle=t.policy_bundle or DEFAULT_BUNDLE)
    return PolicyInfo(tenant=t.name, version=version or t.policy_version, yaml=t.policy_yaml,
                      bundle=t.policy_bundle, updated_at_ms=at_ms or t.policy_updated_at_ms, seq=seq,
                      summary=summary)


def gateway_info(s: Session, t: rows.Tenant, g: rows.Gateway, seq: int = 0, summary: str = "") -> PolicyInfo:
    """A gateway's override (yaml "" and version 0 when none) and the policy it enforces."""
    override = s.get(PolicyOverride, g.id)
    tenant_bundle = common_pb2.PolicyBundle.FromString(t.policy_bundle or DEFAULT_BUNDLE)
    own = next((e.bundle for e in tenant_bundle.gateways if e.gateway_id == g.id), None)
    if own is None:
        del tenant_bundle.gateways[:]
        own = tenant_bundle
    policy = tenant_policy(t)
    if override is not None:
        policy = effective_policy(policy, read_override(override.yaml))
    return PolicyInfo(
        tenant=t.name, gateway=g.name, version=override.version if override else 0,
        yaml=override.yaml if override else "", bundle=own.SerializeToString(deterministic=True),
        updated_at_ms=override.updated_at_ms if override else 0, seq=seq, summary=summary,
        effective_yaml=policy_yaml(policy),
    )


class Policies:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set_policy(self, tenant_name: str, text: str, gateway_name: str = "") -> PolicyInfo:
        """The tenant's policy, or with `gateway_name` that gateway's override (all or nothing)."""
        if gateway_name:
            override = read_override(text)  # before any write: a bad document changes nothing
            with self.db.session() as s:
                tenant, gateway = gateway_row(s, tenant_name, gateway_name)
                effective_policy(tenant_policy(tenant), override)  # its errors name the override's lines
                stored = store_version(s, tenant, gateway.id, text)
                return gateway_info(s, tenant, gateway, stored.seq, stored.summary)
        policy = parse_policy_yaml(text)
        with self.db.session() as s:
            tenant = tenant_row(s, tenant_name)
            stored = store_version(s, tenant, "", text, policy=policy)
            return policy_info(tenant, stored.seq, stored.summary)

    def unset_override(self, tenant_name: str, gateway_name: str) -> PolicyInfo:
        with self.db.session() as s:
            tenant, gateway = gateway_row(s, tenant_name, gateway_name)
            hold_tenant(s, tenant)  # before the read: two unsets (or an unset and a set) serialize here
            if s.get(PolicyOverride, gateway.id) is None:
                raise NotFound(f"gateway {tenant.name}/{gateway.name} has no policy override")
            stored = store_version(s, tenant, gateway.id, "")
            return gateway_info(s, tenant, gateway, stored.seq, stored.summary)

    def get_policy(self, tenant_name: str) -> PolicyInfo:
        with self.db.session(readonly=True) as s:
            tenant = tenant_row(s, tenant_name)
            row = latest(s, tenant.id, "")
            return policy_info(tenant, version=row.version if row else 0,
                               at_ms=row.created_at_ms if row else 0)

    def get_gateway_policy(self, tenant_name: str, gateway_name: str) -> PolicyInfo:
        with self.db.session(readonly=True) as s:
            tenant, gateway = gateway_row(s, tenant_name, gateway_name)
            return gateway_info(s, tenant, gateway)
