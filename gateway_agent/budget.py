"""The device budget: at most N indicators reach the backend, the highest-ranked ones.

A router has the memory it has: when the desired state holds more indicators than the budget, the
agent enforces the best `budget` of them and reports how many it left out (a state of its own, not
a refusal: the rest is enforced as sent). Rank: confidence x scope (the tenant's own indicators
count a quarter more than the MSSP-wide ones); ties go to the longer-lived, then by value, so every
agent with the same state picks the same set.

Cost per indicator on a router (measured for the footprint issue: about 760 B in the agent at rest
and up to 1 KB during a full apply, plus the nft set element in the kernel): the default budget
gives the agent about half of the machine's memory at 2.5 KB per indicator, 400 per MiB of RAM,
about 100,000 on a 256 MB router. enforcement.json's "ioc_budget" or --ioc-budget sets it.
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path

from gateway_agent.backends.base import EnforcementBackend, WrappedBackend
from gateway_agent.clock import enforcement_ms
from gateway_agent.state import ChannelState, DesiredState, IocKey, StateChange
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL
from mssp.v1 import common_pb2

PER_MIB = 400
MIN_BUDGET = 10_000
MAX_BUDGET = 2_000_000
TENANT_WEIGHT = 1.25
ALLIANCE_WEIGHT = 1.1  # seen at the MSSP's own customers: above a generic feed, below the tenant's own
_WEIGHTS = {GLOBAL_CHANNEL: 1.0, ALLIANCE_CHANNEL: ALLIANCE_WEIGHT}
_NEVER = 2**63


def default_budget(meminfo: Path = Path("/proc/meminfo")) -> int:
    """From the machine's RAM (MemTotal); MAX_BUDGET when it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                mib = int(line.split()[1]) // 1024
                return max(MIN_BUDGET, min(MAX_BUDGET, mib * PER_MIB))
    except (OSError, ValueError, IndexError):
        pass
    return MAX_BUDGET


def budget_for(state_dir: Path, flag: int | None = None) -> int:
    """--ioc-budget, else enforcement.json's "ioc_budget", else the default for this machine's RAM."""
    if flag is not None:
        if not 1 <= flag <= MAX_BUDGET:
            raise ValueError(f"--ioc-budget must be between 1 and {MAX_BUDGET}, got {flag}")
        return flag
    path = state_dir / "enforcement.json"
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    value = data.get("ioc_budget") if isinstance(data, dict) else None
    if value is None:
        return default_budget()
    if type(value) is not int or not 1 <= value <= MAX_BUDGET:
        raise ValueError(f"{path}: ioc_budget must be an integer 1-{MAX_BUDGET}, got {value!r}")
    return value


def within_budget(state: DesiredState, budget: int, at_ms: int | None = None) -> tuple[DesiredState, int]:
    """The state the backend is given (the same object when it fits) and how many were left out."""
    at = enforcement_ms() if at_ms is None else at_ms
    live = [(name, key, ioc) for name, ch in state.channels.items() for key, ioc in ch.iocs.items()
            if not ioc.expires_at_ms or ioc.expires_at_ms > at]
    if len(live) <= budget:
        return state, 0

    def rank(item: tuple[str, IocKey, common_pb2.Ioc]) -> tuple[float, int, str]:
        name, key, ioc = item
        weight = _WEIGHTS.get(name, TENANT_WEIGHT)
        return ioc.confidence * weight, ioc.expires_at_ms or _NEVER, f"{key[0]}:{key[1]}"

    kept = heapq.nlargest(budget, live, key=rank)
    channels = {name: ChannelState(seq=ch.seq) for name, ch in state.channels.items()}
    for name, key, ioc in kept:
        channels[name].iocs[key] = ioc
    view = DesiredState(state.tenant_channel, channels=channels, policy=state.policy)
    return view, len(live) - budget


class BudgetedBackend(WrappedBackend):
    """Hands the backend at most `budget` indicators. While the state fits, deltas pass through;
    over budget a change can move others in or out of the chosen set, so it is applied whole."""

    def __init__(self, backend: EnforcementBackend, budget: int) -> None:
        if not 1 <= budget <= MAX_BUDGET:
            raise ValueError(f"the IOC budget must be between 1 and {MAX_BUDGET}, got {budget}")
        super().__init__(backend)
        self.budget, self.left_out = budget, 0

    def apply_full(self, state: DesiredState) -> None:
        view, left_out = within_budget(state, self.budget)
        self.inner.apply_full(view)
        self.left_out = left_out

    def apply_delta(self, state: DesiredState, change: StateChange) -> None:
        view, left_out = within_budget(state, self.budget)
        if change.full or left_out or self.left_out:
            self.inner.apply_full(view)
        else:
            self.inner.apply_delta(state, change)
        self.left_out = left_out

    def budget_report(self) -> dict[str, int]:
        return {"ioc_budget": self.budget, "left_out_by_budget": self.left_out}
