"""What the agent knows of its links, and since when: one log line when a fact changes (NATS
connected or disconnected, controller reachable or not, certificate refused), none while it holds,
and status.json says how old each fact and each last event (applied, resynced, reported) is.

A person on a router reads the log to learn what happened and `mssp-agent status` to learn what is
true now; both stay quiet while nothing changes (the rate-limited warnings are brokers.AwayLog's).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc

from mssp.common.clock import now_ms

if TYPE_CHECKING:
    from gateway_agent.state import StateChange
    from gateway_agent.status_file import PushStats

log = logging.getLogger("mssp.agent")

_LINES = {  # fact -> (line when it becomes true, line when it becomes false)
    "nats_connected": ("NATS connected", "NATS disconnected; reconnecting"),
    "controller_reachable": ("controller reachable", "controller unreachable; enforcing what we have"),
    "revoked": ("the controller refused our certificate (revoked or unknown): enforcing the last state "
                "we had; a new identity needs `msspctl gateway token TENANT/NAME` and `mssp-agent enroll`",
                "the controller accepts our certificate again"),
}


class AgentFacts:
    def __init__(self, label: str) -> None:
        self.label = label
        self.values: dict[str, bool] = {}
        self.since_ms: dict[str, int] = {}
        self.last_ms: dict[str, int] = {}  # events: applied, resynced, controller_answered

    def change(self, name: str, value: bool) -> None:
        known = self.values.get(name)
        if known == value:
            return
        self.values[name], self.since_ms[name] = value, now_ms()
        if known is None and not value:
            return  # not connected yet at start: nothing has changed
        up, down = _LINES[name]
        level = logging.ERROR if name == "revoked" and value else logging.INFO
        log.log(level, "%s: %s", self.label, up if value else down)

    def event(self, name: str) -> None:
        self.last_ms[name] = now_ms()

    def status(self) -> dict[str, object]:
        return {"since_ms": dict(self.since_ms), "last_ms": dict(self.last_ms)}


class FactsMixin:
    """The agent's link flags as properties, so every assignment is a fact that logs its changes."""

    facts: AgentFacts
    push_stats: PushStats

    @property
    def nats_connected(self) -> bool:
        return self.facts.values.get("nats_connected", False)

    @nats_connected.setter
    def nats_connected(self, up: bool) -> None:
        self.facts.change("nats_connected", up)

    @property
    def controller_reachable(self) -> bool:
        return self.facts.values.get("controller_reachable", False)

    @controller_reachable.setter
    def controller_reachable(self, up: bool) -> None:
        self.facts.change("controller_reachable", up)
        if up:
            self.facts.change("revoked", False)
            self.facts.event("controller_answered")

    @property
    def revoked(self) -> bool:
        return self.facts.values.get("revoked", False)

    def controller_lost(self, exc: Exception) -> None:
        """A call to the controller failed: away, or (UNAUTHENTICATED) our certificate is refused."""
        refused = isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAUTHENTICATED
        self.facts.change("controller_reachable", refused)  # a refusal is an answer
        if refused:
            self.facts.change("revoked", True)

    def applied(self, change: StateChange) -> None:
        self.push_stats.pushes_applied += 1
        self.facts.event("applied")
        what = "in full" if change.full else f"+{len(change.added)} -{len(change.removed)} indicators"
        log.info("%s: applied %s#%d (%s)", self.facts.label, change.channel, change.seq, what)

    def resynced(self, versions: str) -> None:
        self.push_stats.resyncs += 1
        self.facts.event("resynced")
        log.info("%s: resynced: applied %s", self.facts.label, versions)
