"""`mssp-agent status` for a person: each fact with how old it is, and whether the agent that wrote
status.json still runs (a stale file must not read as the present)."""

from __future__ import annotations

import os
from pathlib import Path

from mssp.common.dirlock import is_held


def ago(ms: object, now_ms: int) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return "never"
    seconds = max(0, (now_ms - ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def running(pid: object, lock: Path | None = None) -> bool:
    """The state dir's lock says it for sure; the recorded pid only when the lock cannot be read
    (a dead agent's pid may have been given to another process since)."""
    held = is_held(lock) if lock is not None else None
    if held is not None:
        return held
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # there, owned by someone else
    return True


def freshness(status: dict[str, object], now_ms: int, lock: Path | None = None) -> dict[str, object]:
    """What JSON readers get besides the file: is the writer alive, and how old is what it wrote."""
    updated = status.get("updated_at_ms")
    return {"agent_running": running(status.get("pid"), lock),
            "status_age_ms": now_ms - updated if isinstance(updated, int) else None}


def lines(status: dict[str, object], now_ms: int, lock: Path | None = None) -> list[tuple[str, str]]:
    """(label, text) rows for the facts that change; the static ones are printed as they are."""
    rows: list[tuple[str, str]] = []
    written = ago(status.get("updated_at_ms"), now_ms)
    if "pid" in status:
        pid = status["pid"]
        rows.append(("agent", f"running (pid {pid}), status written {written}" if running(pid, lock)
                     else f"NOT running (was pid {pid}); what follows is from {written}"))
    else:
        rows.append(("agent", "has not run with this state dir yet"))
    since = status.get("since_ms") if isinstance(status.get("since_ms"), dict) else {}
    last = status.get("last_ms") if isinstance(status.get("last_ms"), dict) else {}
    assert isinstance(since, dict) and isinstance(last, dict)
    if status.get("revoked"):
        rows.append(("revoked", f"YES, since {ago(since.get('revoked'), now_ms)}: the controller refused "
                                "this gateway's certificate; enforcing the last state it had"))
    for fact in ("nats_connected", "controller_reachable"):
        if fact in status:
            state = "yes" if status[fact] else "no"
            rows.append((fact, f"{state} (since {ago(since.get(fact), now_ms)})"))
    rows.append(("last answer", ago(last.get("controller_answered"), now_ms)))
    rows.append(("last push applied", ago(last.get("applied"), now_ms)))
    rows.append(("last resync", ago(last.get("resynced"), now_ms)))
    return rows
