"""Start-up from the state file, and what to do when it cannot be loaded.

A state file that does not load (corrupt snapshot, a hole in the journal) must not keep the router
from enforcing: the agent starts anyway with an empty state, leaves whatever the kernel holds in
force (the nft table and dnsmasq outlive the agent process) and asks the controller for a forced
snapshot. Nothing reaches the backend until every channel has been replaced by a snapshot, so the
first apply is a whole state, never a half one that would flush the rest of the ruleset.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gateway_agent.backends.base import ApplyError
from gateway_agent.state import DesiredState, StateChange
from gateway_agent.statefile import StateFile, StateFileError
from mssp.v1 import push_pb2

if TYPE_CHECKING:
    from gateway_agent.runtime import GatewayAgent

log = logging.getLogger("mssp.agent")


class Recovery:
    """Holds enforcement back while the agent rebuilds its state from a forced snapshot; while
    `holding`, every SyncRequest asks for the controller's whole state, not deltas."""

    def __init__(self) -> None:
        self.holding = False
        self.reason = ""
        self._replaced: set[str] = set()

    def begin(self, reason: str) -> None:
        self.holding = True
        self.reason = reason
        self._replaced = set()

    def holds(self, state: DesiredState, change: StateChange, push: push_pb2.Push) -> bool:
        """True while `change` must not reach the backend: some channel is still unknown. The
        caller then counts nothing as applied and leaves last_error (the reason) in place."""
        if not self.holding:
            return False
        if change.full and (change.push or push).WhichOneof("body") == "snapshot":
            self._replaced.add(change.channel)
        if self._replaced >= state.channel_names:
            self.holding = False
            self.reason = ""
            return False
        return True


def load_applied(
    statefile: StateFile, recovery: Recovery, tenant_channel: str, label: str
) -> DesiredState | None:
    """The state on disk (None when there is none); an empty one and a forced resync when it
    cannot be loaded."""
    try:
        return statefile.load(tenant_channel, repair=True)
    except StateFileError as exc:
        log.error("%s: state file unusable (%s); keeping what the kernel enforces and resyncing", label, exc)
        recovery.begin(f"state file unusable; waiting for a full snapshot ({exc})")
        return DesiredState(tenant_channel)


def reload_applied(agent: GatewayAgent) -> DesiredState:
    """What is in force after the backend refused a change: the state on disk, or (unusable) hold;
    last_error then says both, until the hold is released."""
    ident = agent.identity
    loaded = load_applied(agent.statefile, agent.recovery, ident.tenant_channel, ident.label)
    if agent.recovery.holding:
        agent.last_error = "; ".join(filter(None, (agent.last_error, agent.recovery.reason)))
    return loaded or DesiredState(ident.tenant_channel)


async def restore(agent: GatewayAgent) -> None:
    """Fail-static: re-enforce the last applied state before talking to anyone."""
    ident = agent.identity
    loaded = await asyncio.to_thread(load_applied, agent.statefile, agent.recovery, ident.tenant_channel,
                                     ident.label)
    if loaded is None:
        return  # never applied anything: nothing of ours to re-enforce
    agent.state = loaded
    if agent.recovery.holding:
        agent.last_error = agent.recovery.reason
        return
    try:
        await asyncio.to_thread(agent.backend.apply_full, loaded)
    except ApplyError as exc:
        agent._apply_failed(exc)
    log.info("%s: restored applied state %s", ident.label, agent.state.versions_text())
