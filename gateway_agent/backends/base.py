"""The enforcement backend interface: everything the agent's runtime asks of a backend.

Shaped for a kernel backend: `apply_full` must be one atomic transaction that leaves the previous
ruleset in force when it fails; `apply_delta` adds and removes IOC elements without rebuilding;
`verify` is a cheap read-back (never a full listing of huge sets). Telemetry reads the kernel's
counters (`read_counters`) and the DNS query log (`dns_query_log`); a backend without them returns
nothing, never raises, so the runtime needs no probing of what a backend is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from gateway_agent.counters import CounterSample
from gateway_agent.errors import AgentError
from gateway_agent.refusals import Refusal
from gateway_agent.state import DesiredState, StateChange


class ApplyError(AgentError):
    """The backend refused the state; whatever was in force before still is."""


class BackendError(AgentError):
    """No backend of that kind, or its configuration is unusable: the agent cannot start."""


class EnforcementBackend(ABC):
    name: str = "abstract"
    hits_block: bool = True  # ioc_hits() does I/O (nft): called off the event loop

    @abstractmethod
    def apply_full(self, state: DesiredState) -> None: ...

    @abstractmethod
    def apply_delta(self, state: DesiredState, change: StateChange) -> None: ...

    def verify(self, state: DesiredState) -> bool:
        return True

    def refusals(self) -> tuple[Refusal, ...]:
        """What the state in force asked for but this backend does not enforce (see refusals.py)."""
        return ()

    def read_counters(self) -> list[CounterSample]:
        """Cumulative counters of what is in force (see counters.py); none by default."""
        return []

    def dns_query_log(self) -> Path | None:
        """The DNS query log telemetry reads, when this backend runs a DNS server."""
        return None

    def ioc_hits(self) -> dict[tuple[str, str], int]:
        """(indicator, LAN host) -> packets dropped so far, read cheaply and often (the sightings
        the agent reports at once, gateway_agent/sightings.py); none by default."""
        return {}

    def budget_report(self) -> dict[str, int]:
        """StatusReport fields of the device budget (gateway_agent/budget.py); none by default."""
        return {}

    def flow_events(self) -> tuple[list[str], list[str]] | None:
        """(the conntrack event command for the router's namespace, networks never to flag) for beacon
        detection (gateway_agent/beacons/); None where there are no real flows."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class WrappedBackend(EnforcementBackend):
    """A backend in front of another (the device budget, the tenant's exemptions): it changes what
    is applied and passes everything else through."""

    def __init__(self, inner: EnforcementBackend) -> None:
        self.inner = inner
        self.name, self.hits_block = inner.name, inner.hits_block

    def apply_full(self, state: DesiredState) -> None:
        self.inner.apply_full(state)

    def apply_delta(self, state: DesiredState, change: StateChange) -> None:
        self.inner.apply_delta(state, change)

    def verify(self, state: DesiredState) -> bool:
        return self.inner.verify(state)

    def refusals(self) -> tuple[Refusal, ...]:
        return self.inner.refusals()

    def read_counters(self) -> list[CounterSample]:
        return self.inner.read_counters()

    def dns_query_log(self) -> Path | None:
        return self.inner.dns_query_log()

    def ioc_hits(self) -> dict[tuple[str, str], int]:
        return self.inner.ioc_hits()

    def budget_report(self) -> dict[str, int]:
        return self.inner.budget_report()

    def flow_events(self) -> tuple[list[str], list[str]] | None:
        return self.inner.flow_events()

    def close(self) -> None:
        self.inner.close()
