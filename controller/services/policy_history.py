"""Policy history: the versions of a tenant's policy or of a gateway's override, diffs between two,
rollbacks (an old document stored as a new version, pushed like any set), and dry runs of a set.

A target is the tenant's policy (gateway "") or one gateway's override. Version numbers are the
tenant's (shared by its policy and its overrides, controller/store/policy_models.py): a version of
another target is named as such, never silently used.
"""

from __future__ import annotations

from dataclasses import replace

from sqlmodel import Session, col, select

from controller.domain.errors import InvalidInput, NotFound
from controller.domain.models import PolicyInfo
from controller.domain.policy.changes import Facts, changes, facts, unified_diff
from controller.domain.policy.merge import effective_policy, read_override, shadows
from controller.domain.policy.model import Policy
from controller.domain.policy.views import Impact, PolicyDiff, Preview, VersionInfo
from controller.domain.policy.yaml_reader import parse_policy_yaml
from controller.services.fleet import gateway_row
from controller.services.policies import gateway_info, policy_info
from controller.services.policy_bundles import (
    compile_tenant_bundle,
    gateway_names,
    overrides_of,
    tenant_policy,
)
from controller.services.policy_versions import latest, store_version
from controller.services.tenants import hold_tenant, tenant_row
from controller.store import models as rows
from controller.store.db import Database
from controller.store.policy_models import PolicyOverride, PolicyVersion


def _target(s: Session, tenant_name: str, gateway_name: str) -> tuple[rows.Tenant, rows.Gateway | None]:
    if gateway_name:
        return gateway_row(s, tenant_name, gateway_name)
    return tenant_row(s, tenant_name), None


def _label(tenant: rows.Tenant, gateway: rows.Gateway | None) -> str:
    return f"{tenant.name}/{gateway.name}" if gateway is not None else tenant.name


def _safe_facts(text: str, gateway: bool) -> Facts | None:
    try:
        return facts(text, gateway=gateway)
    except InvalidInput:  # stored under older rules than today's
        return None


def _version_row(
    s: Session, tenant: rows.Tenant, gateway: rows.Gateway | None, version: int
) -> PolicyVersion:
    label = _label(tenant, gateway)
    row = s.exec(select(PolicyVersion).where(PolicyVersion.tenant_id == tenant.id,
                                             PolicyVersion.version == version)).first()
    if row is None:
        raise NotFound(f"{label} has no policy version {version} (see: msspctl policy history {label})")
    if row.gateway_id != (gateway.id if gateway is not None else ""):
        owner = gateway_names(s, [row.gateway_id]).get(row.gateway_id, "a deleted gateway")
        other = "the tenant's policy" if not row.gateway_id else f"the override of {tenant.name}/{owner}"
        raise NotFound(f"version {version} of tenant {tenant.name} is {other}, not "
                       f"{'the policy' if gateway is None else 'the override'} of {label} "
                       f"(see: msspctl policy history {label})")
    return row


def _diff(
    tenant: rows.Tenant, gateway: rows.Gateway | None, a: tuple[int, str], b: tuple[int, str]
) -> PolicyDiff:
    label = _label(tenant, gateway)
    is_gateway = gateway is not None
    before, after = _safe_facts(a[1], is_gateway), _safe_facts(b[1], is_gateway)
    text = unified_diff(a[1], b[1], f"{label} v{a[0]}" if a[0] else f"{label} (none)",
                        f"{label} v{b[0]}" if b[0] else f"{label} (proposed)")
    diff = PolicyDiff(tenant.name, gateway.name if gateway else "", a[0], b[0], text)
    if after is None:
        return diff
    c = changes(before, after)
    return replace(diff, rules_added=c.rules_added, rules_removed=c.rules_removed,
                   rules_changed=c.rules_changed, rules_reordered=c.reordered,
                   default_before=c.default_before, default_after=c.default_after)


class PolicyHistory:
    def __init__(self, db: Database) -> None:
        self.db = db

    def history(self, tenant_name: str, gateway_name: str = "") -> list[VersionInfo]:
        with self.db.session(readonly=True) as s:
            tenant, gateway = _target(s, tenant_name, gateway_name)
            found = list(s.exec(select(PolicyVersion).where(
                PolicyVersion.tenant_id == tenant.id,
                PolicyVersion.gateway_id == (gateway.id if gateway is not None else ""))
                .order_by(col(PolicyVersion.version))))
        out = []
        for index, row in enumerate(found):
            f = _safe_facts(row.yaml, gateway is not None)
            out.append(VersionInfo(row.version, row.created_at_ms, row.created_by, row.summary,
                                   len(f.rules) if f else 0, f.default_action if f else "",
                                   removed=f is not None and not f.present, current=index == len(found) - 1))
        return out

    def diff(self, tenant_name: str, gateway_name: str, a: int, b: int) -> PolicyDiff:
        with self.db.session(readonly=True) as s:
            tenant, gateway = _target(s, tenant_name, gateway_name)
            old, new = _version_row(s, tenant, gateway, a), _version_row(s, tenant, gateway, b)
        return _diff(tenant, gateway, (old.version, old.yaml), (new.version, new.yaml))

    def rollback(self, tenant_name: str, gateway_name: str, version: int) -> PolicyInfo:
        with self.db.session() as s:
            tenant, gateway = _target(s, tenant_name, gateway_name)
            hold_tenant(s, tenant)  # "nothing changed" is decided against a current version that holds
            row = _version_row(s, tenant, gateway, version)
            gateway_id = gateway.id if gateway is not None else ""
            current = latest(s, tenant.id, gateway_id)
            if current is not None and (current.version == version or current.yaml == row.yaml):
                same = ("is the current version" if current.version == version
                        else f"is the same document as the current version {current.version}")
                note = f"version {version} {same}; nothing changed"
                info = gateway_info(s, tenant, gateway) if gateway is not None else policy_info(tenant)
                return replace(info, unchanged=True, summary=note)
            note = f"rollback to v{version}; "
            if gateway is not None:
                if row.yaml:
                    read_override(row.yaml)
                stored = store_version(s, tenant, gateway.id, row.yaml, note=note)
                return gateway_info(s, tenant, gateway, stored.seq, stored.summary)
            stored = store_version(s, tenant, "", row.yaml, policy=parse_policy_yaml(row.yaml), note=note)
            return policy_info(tenant, stored.seq, stored.summary)

    def preview(self, tenant_name: str, text: str, gateway_name: str = "") -> Preview:
        """What `policy set` would do: validated as it would be, nothing written."""
        with self.db.session(readonly=True) as s:
            tenant, gateway = _target(s, tenant_name, gateway_name)
            if gateway is not None:
                override = read_override(text)
                policy = tenant_policy(tenant)
                effective_policy(policy, override)  # the merge must hold
                current = s.get(PolicyOverride, gateway.id)
                was = (current.version, current.yaml) if current is not None else (0, "")
                impact = [Impact(gateway.name, True, shadows(policy, override))]
            else:
                policy = parse_policy_yaml(text)
                overrides = overrides_of(s, tenant.id)
                compile_tenant_bundle(s, tenant, tenant.policy_version + 1, policy, overrides)  # all merge
                row = latest(s, tenant.id, "")
                was = (row.version, row.yaml) if row is not None and tenant.policy_yaml else (0, "")
                impact = _tenant_impact(s, tenant, policy, {o.gateway_id: o for o in overrides})
        return Preview(_diff(tenant, gateway, was, (0, text)), impact, unchanged=was[1] == text)


def _tenant_impact(s: Session, tenant: rows.Tenant, policy: Policy,
                   overrides: dict[str, PolicyOverride]) -> list[Impact]:
    gateways = s.exec(select(rows.Gateway).where(rows.Gateway.tenant_id == tenant.id,
                                                 rows.Gateway.retired_at_ms == 0)
                      .order_by(col(rows.Gateway.name))).all()
    out = []
    for g in gateways:
        override = overrides.get(g.id)
        shadowed = shadows(policy, read_override(override.yaml)) if override is not None else []
        out.append(Impact(g.name, override is not None, shadowed))
    return out
