"""The tenant's bundle as pushed: its policy compiled, plus one effective bundle per gateway override
(controller/domain/policy/merge.py), each with the tenant's false-positive exemptions.

Size: each effective bundle must fit one broker message like any policy (the agent holds and
compiles one); the tenant bundle with all of them travels in parts (mssp.common.parts) and in
part 0 of a tenant snapshot over gRPC, so it is bounded well below the gRPC message limit.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, select

from controller.domain.errors import InvalidInput
from controller.domain.policy.bundle import policy_to_bundle
from controller.domain.policy.merge import effective_policy, read_override
from controller.domain.policy.model import Policy
from controller.domain.policy.yaml_reader import DEFAULT_POLICY_YAML, parse_policy_yaml
from controller.store import models as rows
from controller.store.policy_models import PolicyOverride
from controller.store.sighting_models import FalsePositive
from mssp.common.parts import MAX_ENVELOPE_BYTES
from mssp.v1 import common_pb2

# The tenant's bundle with every gateway's: 3 MiB, 4 parts on the broker; a snapshot's part 0
# (this and up to 5,000 IOCs) stays under the 4 MiB gRPC message limit.
MAX_TENANT_BUNDLE_BYTES = 3 * MAX_ENVELOPE_BYTES


def exempt_values(s: Session, tenant_id: str) -> list[str]:
    """Shared indicators the tenant reported as false positives (services/false_positives.py)."""
    return sorted(s.exec(select(FalsePositive.value).where(FalsePositive.tenant_id == tenant_id)))


def set_exempt(bundle: common_pb2.PolicyBundle, values: Iterable[str]) -> None:
    """The tenant's exemptions on its bundle and on every gateway's: they apply to all its gateways."""
    values = list(values)
    for target in (bundle, *(entry.bundle for entry in bundle.gateways)):
        del target.exempt[:]
        target.exempt.extend(values)


def tenant_policy(tenant: rows.Tenant) -> Policy:
    return parse_policy_yaml(tenant.policy_yaml or DEFAULT_POLICY_YAML)


def overrides_of(s: Session, tenant_id: str) -> list[PolicyOverride]:
    return list(s.exec(select(PolicyOverride).where(PolicyOverride.tenant_id == tenant_id)
                       .order_by(col(PolicyOverride.gateway_id))))


def gateway_names(s: Session, gateway_ids: Iterable[str]) -> dict[str, str]:
    ids = list(gateway_ids)
    if not ids:
        return {}
    found = s.exec(select(rows.Gateway.id, rows.Gateway.name).where(col(rows.Gateway.id).in_(ids)))
    return {gateway_id: name for gateway_id, name in found}


def compile_tenant_bundle(
    s: Session, tenant: rows.Tenant, version: int, policy: Policy | None = None,
    overrides: list[PolicyOverride] | None = None,
) -> common_pb2.PolicyBundle:
    """The bundle for `tenant` at `version` (its policy `policy` when given, else the stored one).
    An override that no longer merges refuses the whole change, naming its gateway."""
    policy = policy or tenant_policy(tenant)
    overrides = overrides_of(s, tenant.id) if overrides is None else overrides
    bundle = policy_to_bundle(policy, version)
    for override in overrides:
        try:
            effective = effective_policy(policy, read_override(override.yaml))
            gateway_bundle = policy_to_bundle(effective, version)
        except InvalidInput as exc:
            name = f"{tenant.name}/{gateway_names(s, [override.gateway_id]).get(override.gateway_id, '?')}"
            raise InvalidInput(f"the override of gateway {name} does not merge with this policy "
                               f"(lines of its override): {exc}") from None
        bundle.gateways.add(gateway_id=override.gateway_id, bundle=gateway_bundle)
    set_exempt(bundle, exempt_values(s, tenant.id))
    size = bundle.ByteSize()
    if size > MAX_TENANT_BUNDLE_BYTES:
        raise InvalidInput(
            f"the tenant's policy with its {len(overrides)} gateway overrides compiles to {size:,} bytes, "
            f"over the {MAX_TENANT_BUNDLE_BYTES:,}-byte limit; make the overrides or the policy smaller")
    return bundle
