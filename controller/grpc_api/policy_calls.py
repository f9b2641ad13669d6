"""The policy calls of OperatorService beyond set/show: gateway overrides, dry runs, history, diffs and
rollbacks (controller/services/policies.py, controller/services/policy_history.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from controller.domain.policy.views import Impact, PolicyDiff, VersionInfo
from controller.grpc_api import convert
from controller.grpc_api.errors import maps_domain_errors
from controller.service import ControllerService
from controller.services.policy_history import PolicyHistory
from mssp.v1 import operator_pb2

Ctx = grpc.aio.ServicerContext


def policy_diff(d: PolicyDiff) -> operator_pb2.PolicyDiff:
    return operator_pb2.PolicyDiff(
        tenant=d.tenant, gateway=d.gateway, from_version=d.from_version, to_version=d.to_version,
        unified_diff=d.unified_diff, rules_added=d.rules_added, rules_removed=d.rules_removed,
        rules_changed=d.rules_changed, rules_reordered=d.rules_reordered, default_before=d.default_before,
        default_after=d.default_after,
    )


def _version(v: VersionInfo) -> operator_pb2.PolicyVersionInfo:
    return operator_pb2.PolicyVersionInfo(
        version=v.version, created_at_ms=v.created_at_ms, created_by=v.created_by, summary=v.summary,
        rules=v.rules, default_action=v.default_action, removed=v.removed, current=v.current,
    )


def _impact(i: Impact) -> operator_pb2.PolicyImpact:
    return operator_pb2.PolicyImpact(gateway=i.gateway, has_override=i.has_override, shadows=i.shadows)


class PolicyCalls:
    """Mixed into OperatorServicer (which authenticates, runs store work off the loop and wakes the
    push publisher)."""

    service: ControllerService
    on_change: Callable[[], None]
    _call: Callable[..., Any]

    def _history(self) -> PolicyHistory:
        return PolicyHistory(self.service.db)

    @maps_domain_errors
    async def DiffProposedPolicy(
        self, request: operator_pb2.SetPolicyRequest, context: Ctx
    ) -> operator_pb2.PolicyPreview:
        preview = await self._call(context, self._history().preview, request.tenant, request.yaml,
                                   request.gateway)
        return operator_pb2.PolicyPreview(diff=policy_diff(preview.diff),
                                          gateways=[_impact(i) for i in preview.gateways],
                                          unchanged=preview.unchanged)

    @maps_domain_errors
    async def GetGatewayPolicy(
        self, request: operator_pb2.GatewayRef, context: Ctx
    ) -> operator_pb2.PolicyInfo:
        info = await self._call(context, self.service.policies.get_gateway_policy, request.tenant,
                                request.name)
        return convert.policy_info(info)

    @maps_domain_errors
    async def UnsetPolicy(
        self, request: operator_pb2.GatewayRef, context: Ctx
    ) -> operator_pb2.PolicyInfo:
        info = await self._call(context, self.service.policies.unset_override, request.tenant, request.name)
        self.on_change()
        return convert.policy_info(info)

    @maps_domain_errors
    async def ListPolicyVersions(
        self, request: operator_pb2.PolicyTarget, context: Ctx
    ) -> operator_pb2.PolicyHistoryResponse:
        versions = await self._call(context, self._history().history, request.tenant, request.gateway)
        return operator_pb2.PolicyHistoryResponse(tenant=request.tenant, gateway=request.gateway,
                                                  versions=[_version(v) for v in versions])

    @maps_domain_errors
    async def DiffPolicy(
        self, request: operator_pb2.DiffPolicyRequest, context: Ctx
    ) -> operator_pb2.PolicyDiff:
        diff = await self._call(context, self._history().diff, request.target.tenant, request.target.gateway,
                                request.from_version, request.to_version)
        return policy_diff(diff)

    @maps_domain_errors
    async def RollbackPolicy(
        self, request: operator_pb2.RollbackPolicyRequest, context: Ctx
    ) -> operator_pb2.PolicyInfo:
        info = await self._call(context, self._history().rollback, request.target.tenant,
                                request.target.gateway, request.version)
        if not info.unchanged:
            self.on_change()
        return convert.policy_info(info)
