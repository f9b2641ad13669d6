"""Per-gateway policy overrides: the tenant's bundle may carry an effective bundle per gateway.

The controller compiles the tenant's policy with each gateway's override merged into
`PolicyBundle.gateways` (the tenant's false-positive exemptions included in each). A gateway
enforces its own entry when it has one, else the tenant's bundle. The state (and the state file)
keeps the tenant's bundle whole; the backend is handed the selected one.
"""

from __future__ import annotations

from gateway_agent.backends.base import EnforcementBackend, WrappedBackend
from gateway_agent.exempt import ExemptingBackend
from gateway_agent.state import DesiredState, StateChange
from mssp.v1 import common_pb2


def own_policy(bundle: common_pb2.PolicyBundle, gateway_id: str) -> common_pb2.PolicyBundle:
    """The bundle this gateway enforces: its entry in `bundle.gateways`, else the tenant's bundle
    (without the other gateways' entries: the backend is handed only what it enforces)."""
    for entry in bundle.gateways:
        if entry.gateway_id == gateway_id:
            return entry.bundle
    if not bundle.gateways:
        return bundle
    tenant_only = common_pb2.PolicyBundle()
    tenant_only.CopyFrom(bundle)
    del tenant_only.gateways[:]
    return tenant_only


class OwnPolicyBackend(WrappedBackend):
    """Hands the backend the state with this gateway's own policy; the selection is made once per
    policy (a push replaces the state's bundle object), not per IOC delta."""

    def __init__(self, inner: EnforcementBackend, gateway_id: str) -> None:
        super().__init__(inner)
        self.gateway_id = gateway_id
        self._source: common_pb2.PolicyBundle | None = None
        self._own = common_pb2.PolicyBundle()

    def view(self, state: DesiredState) -> DesiredState:
        if state.policy is not self._source:
            self._source, self._own = state.policy, own_policy(state.policy, self.gateway_id)
        if self._own is state.policy:
            return state
        return DesiredState(state.tenant_channel, channels=state.channels, policy=self._own)

    def apply_full(self, state: DesiredState) -> None:
        self.inner.apply_full(self.view(state))

    def apply_delta(self, state: DesiredState, change: StateChange) -> None:
        self.inner.apply_delta(self.view(state), change)

    def verify(self, state: DesiredState) -> bool:
        return self.inner.verify(self.view(state))


def policy_backend(backend: EnforcementBackend, gateway_id: str) -> EnforcementBackend:
    """What the runtime enforces through: the tenant's exemptions (exempt.py), then this gateway's
    own policy."""
    return ExemptingBackend(OwnPolicyBackend(backend, gateway_id))
