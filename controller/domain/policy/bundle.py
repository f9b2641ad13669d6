"""Compile a validated Policy into the protobuf PolicyBundle that is signed and pushed to routers."""

from __future__ import annotations

from controller.domain.errors import InvalidInput
from controller.domain.policy.model import Policy
from controller.domain.policy.validation import validate_policy
from mssp.common.parts import MAX_POLICY_BUNDLE_BYTES
from mssp.v1 import common_pb2

_ACTIONS = {
    "allow": common_pb2.ACTION_ALLOW,
    "deny": common_pb2.ACTION_DENY,
    "alert": common_pb2.ACTION_ALERT,
}


def policy_to_bundle(policy: Policy, version: int) -> common_pb2.PolicyBundle:
    """The wire form of a policy; ``categories`` carries only this policy's extensions."""
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**64:
        raise InvalidInput(f"policy version must be an integer 0..2^64-1, got {version!r}")
    if not isinstance(policy, Policy):
        raise InvalidInput(f"expected a Policy, got {type(policy).__name__}")
    # Re-validate: a model_construct()ed or otherwise hand-built Policy must not skip the checks.
    policy = validate_policy(policy.model_dump())
    bundle = common_pb2.PolicyBundle(version=version, default_action=_ACTIONS[policy.default_action])
    for index, rule in enumerate(policy.rules):
        bundle.rules.append(
            common_pb2.Rule(
                name=policy.rule_name(index),
                action=_ACTIONS[rule.action],
                cidrs=rule.cidrs,
                protocol="" if rule.protocol == "any" else rule.protocol,
                ports=[common_pb2.PortRange(first=p.first, last=p.last) for p in rule.ports],
                domains=rule.domains,
                categories=rule.categories,
            )
        )
    for threshold in policy.upload_thresholds:
        bundle.upload_thresholds.append(
            common_pb2.UploadThreshold(category=threshold.category, bytes_per_day=threshold.max_per_day)
        )
    for name in sorted(policy.categories):
        bundle.categories[name].domains.extend(policy.categories[name])
    check_bundle_size(bundle)
    return bundle


def check_bundle_size(bundle: common_pb2.PolicyBundle) -> None:
    """A policy travels whole in one push (and in part 0 of a tenant snapshot): its bundle must fit
    one broker message with room for the envelope. A YAML under MAX_POLICY_BYTES can compile larger."""
    size = bundle.ByteSize()
    if size > MAX_POLICY_BUNDLE_BYTES:
        raise InvalidInput(
            f"policy compiles to a {size:,}-byte bundle, over the {MAX_POLICY_BUNDLE_BYTES:,}-byte limit "
            "(a policy push must fit one 1 MiB broker message); use fewer or wider CIDRs, fewer domains, "
            "or put bulk indicators in IOCs (they travel in parts)"
        )
