"""status.json: what `mssp-agent status` and a person on the router read. The agent only writes it;
nothing reads it back, so it is never a source of truth."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway_agent.refusals import MAX_REPORTED
from mssp.common.clock import now_ms

if TYPE_CHECKING:
    from gateway_agent.runtime import GatewayAgent

STATUS_FILE = "status.json"
STATUS_WRITE_DELAY = 1.0


@dataclass
class PushStats:
    """What became of the pushes this agent process received (status.json's "counters")."""

    pushes_applied: int = 0
    rejected: int = 0  # bad signature, wrong channel, expired, malformed
    stale: int = 0  # older than applied (replays, late duplicates)
    gaps: int = 0
    resyncs: int = 0
    apply_errors: int = 0


def agent_status(agent: GatewayAgent) -> dict[str, object]:
    """What the running agent enforces and how it is connected (read on the event loop)."""
    v = agent.state.versions()
    refusals = agent.backend.refusals()
    return {
        "tenant": agent.identity.tenant_name,
        "gateway": agent.identity.gateway_name,
        "gateway_id": agent.identity.gateway_id,
        "backend": agent.backend.name,
        "applied": {"global_seq": v.global_seq, "tenant_seq": v.tenant_seq, "alliance_seq": v.alliance_seq},
        "channels": sorted(agent.state.channel_names),
        "policy_version": agent.state.policy.version,
        "ioc_count": agent.state.ioc_count(),
        **agent.backend.budget_report(),  # ioc_budget, left_out_by_budget
        "nats_connected": agent.nats_connected,
        "controller_reachable": agent.controller_reachable,
        "revoked": agent.revoked,  # the controller refused our certificate
        **agent.facts.status(),  # since_ms: when each fact became true; last_ms: the last events
        "last_error": agent.last_error,
        "certificate": agent.renewer.status(),  # expiry, last renewal and its error (renewal.py)
        "recovering": agent.recovery.holding,  # enforcement held until a forced snapshot is in
        "last_rejection": agent.last_rejection,
        "refusals": [str(r) for r in refusals[:MAX_REPORTED]],
        "refusals_total": len(refusals),
        "counters": asdict(agent.push_stats),  # the key predates PushStats: status.json readers use it
        "pid": os.getpid(),
        "updated_at_ms": now_ms(),
    }


class StatusWrites:
    """status.json is for humans and `mssp-agent status`: written at most once a second."""

    def __init__(self, write: Callable[[], Awaitable[None]]) -> None:
        self.write = write
        self._pending = False

    def schedule(self) -> None:
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_later(STATUS_WRITE_DELAY, self._spawn)

    def _spawn(self) -> None:
        self._pending = False
        task = asyncio.ensure_future(self.write())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)


def write_status_file(state_dir: Path, status: dict[str, object]) -> None:
    """Atomic replace with a per-thread temp name: two writes may overlap, neither leaves a torn file."""
    path = state_dir / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(status, indent=2))
    os.replace(tmp, path)
