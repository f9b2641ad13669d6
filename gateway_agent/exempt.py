"""A tenant's own word over shared lists: indicators it reported as false positives are not enforced.

The tenant's policy bundle lists them (`exempt`, values); the controller pushes it on the tenant
channel when the tenant reports one. The global and alliance channels still hold them (every other
tenant keeps enforcing them); this wrapper hands the real backend the state without them. The
tenant's own channel is never filtered: what the tenant itself blocks, it blocks.

Cost: nothing while the policy exempts nothing. Otherwise a shared channel holding an exempt value
is copied without it for each apply (the alliance channel is small; a full global list is copied
only when an exempt value is in it).
"""

from __future__ import annotations

from gateway_agent.backends.base import WrappedBackend
from gateway_agent.state import ChannelState, DesiredState, StateChange
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL

SHARED = (GLOBAL_CHANNEL, ALLIANCE_CHANNEL)


def exempt_view(state: DesiredState) -> DesiredState:
    """`state` without the exempt values of its shared channels (the same object when none apply)."""
    exempt = set(state.policy.exempt)
    if not exempt:
        return state
    channels = dict(state.channels)
    changed = False
    for name in SHARED:
        ch = channels.get(name)
        if ch is not None and any(value in exempt for _kind, value in ch.iocs):
            channels[name] = ChannelState(ch.seq, {k: i for k, i in ch.iocs.items() if k[1] not in exempt})
            changed = True
    if not changed:
        return state
    return DesiredState(state.tenant_channel, channels=channels, policy=state.policy)


def _touches(change: StateChange, exempt: set[str]) -> bool:
    return any(ioc.value in exempt for ioc in (*change.added, *change.removed))


class ExemptingBackend(WrappedBackend):
    def apply_full(self, state: DesiredState) -> None:
        self.inner.apply_full(exempt_view(state))

    def apply_delta(self, state: DesiredState, change: StateChange) -> None:
        exempt = set(state.policy.exempt)
        if exempt and _touches(change, exempt):
            self.inner.apply_full(exempt_view(state))  # the element may be held by another channel too
        else:
            self.inner.apply_delta(exempt_view(state), change)

    def verify(self, state: DesiredState) -> bool:
        return self.inner.verify(exempt_view(state))
