"""The enforcement backend interface.

Shaped for a kernel backend: `apply_full` must be one atomic transaction that leaves the previous
ruleset in force when it fails; `apply_delta` adds and removes IOC elements without rebuilding;
`verify` is a cheap read-back (never a full listing of huge sets).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from gateway_agent.refusals import Refusal
from gateway_agent.state import DesiredState, StateChange


class ApplyError(Exception):
    """The backend refused the state; whatever was in force before still is."""


class EnforcementBackend(ABC):
    name: str = "abstract"

    @abstractmethod
    def apply_full(self, state: DesiredState) -> None: ...

    @abstractmethod
    def apply_delta(self, state: DesiredState, change: StateChange) -> None: ...

    def verify(self, state: DesiredState) -> bool:
        return True

    def refusals(self) -> tuple[Refusal, ...]:
        """What the state in force asked for but this backend does not enforce (see refusals.py)."""
        return ()

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
