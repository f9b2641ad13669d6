"""The ansible-runner adapter: one playbook run, its events folded into a result per host.

Events arrive on the runner's thread; `on_host` is called there with each host's progress (the
caller hands it to its event loop). Secrets never travel as variables: the token and the SSH key are
files the inventory names, so ansible-runner's artifacts (command line, events) hold only paths,
and every task that reads the token is no_log in the role."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mssp.common.text import clean_line

MAX_MESSAGE = 500
ARTIFACTS_KEPT = 30  # runs whose ansible-runner artifacts stay in the data dir (rotated)
# States a host ends in; "running" only while the run goes on.
FINAL = ("ok", "changed", "failed", "unreachable", "skipped")


@dataclass
class HostOutcome:
    gateway: str
    host: str
    state: str = "pending"
    ok: int = 0
    changed: int = 0
    task: str = ""
    message: str = ""
    started: float = 0.0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per role task file (ssh, copy...)


def _message(res: dict[str, Any]) -> str:
    parts = [str(res.get(k) or "").strip() for k in ("msg", "stderr")]
    text = " | ".join(p for p in parts if p) or "failed without a message"
    return clean_line(text)[:MAX_MESSAGE]


class EventFold:
    """Folds ansible-runner events into one HostOutcome per inventory host."""

    def __init__(self, hosts: dict[str, str], on_host: Callable[[HostOutcome], None]) -> None:
        self.hosts = {name: HostOutcome(name, address) for name, address in hosts.items()}
        self.on_host = on_host
        self._task_started: dict[str, tuple[str, float]] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        name = data.get("host")
        outcome = self.hosts.get(name) if isinstance(name, str) else None
        kind = event.get("event", "")
        if kind == "playbook_on_stats":
            self._final(data)
            return True
        if outcome is None:
            return True
        now = time.monotonic()
        task = clean_line(str(data.get("task") or ""))[:200]
        if kind == "runner_on_start":
            outcome.started = outcome.started or now
            outcome.state, outcome.task = "running", task
            self._task_started[outcome.gateway] = (str(data.get("task_path") or ""), now)
        elif kind in ("runner_on_ok", "runner_on_skipped", "runner_on_failed", "runner_on_unreachable"):
            self._phase(outcome, now)
            res = data.get("res") or {}
            if kind == "runner_on_ok":
                outcome.ok += 1
                outcome.changed += 1 if res.get("changed") else 0
            elif kind == "runner_on_failed" and not data.get("ignore_errors"):
                outcome.state, outcome.task, outcome.message = "failed", task, _message(res)
            elif kind == "runner_on_unreachable":
                outcome.state, outcome.task, outcome.message = "unreachable", task, _message(res)
        else:
            return True
        outcome.seconds = now - outcome.started if outcome.started else 0.0
        self.on_host(replace(outcome, phases=dict(outcome.phases)))
        return True

    def _phase(self, outcome: HostOutcome, now: float) -> None:
        path, began = self._task_started.pop(outcome.gateway, ("", now))
        phase = Path(path.split(":")[0]).stem or "other"
        outcome.phases[phase] = outcome.phases.get(phase, 0.0) + (now - began)

    def _final(self, stats: dict[str, Any]) -> None:
        for name, outcome in self.hosts.items():
            if outcome.state in ("failed", "unreachable"):
                continue
            if stats.get("dark", {}).get(name):
                outcome.state = "unreachable"
            elif stats.get("failures", {}).get(name):
                outcome.state = "failed"
            elif name not in stats.get("processed", {}):
                outcome.state = "skipped"
                outcome.message = outcome.message or "not run: the run stopped before this host"
            else:
                outcome.state = "changed" if stats.get("changed", {}).get(name) else "ok"

    def finish(self, rc: int | None, status: str) -> list[HostOutcome]:
        """Results once the run is over; a run that died before its stats marks unfinished hosts."""
        for outcome in self.hosts.values():
            if outcome.state not in FINAL:
                outcome.state = "failed"
                outcome.message = outcome.message or f"ansible-playbook ended ({status}, rc {rc}) first"
            self.on_host(replace(outcome, phases=dict(outcome.phases)))
        return list(self.hosts.values())


@dataclass(frozen=True)
class PlaybookRun:
    """What ansible-runner needs for one run; `run` blocks (call it from a worker thread)."""

    private_data_dir: Path
    playbook: Path
    inventory: dict[str, Any]
    extravars: dict[str, Any]
    envvars: dict[str, str]
    ident: str
    forks: int

    def run(self, hosts: dict[str, str], on_host: Callable[[HostOutcome], None],
            cancelled: Callable[[], bool]) -> list[HostOutcome]:
        import ansible_runner  # the Ansible stack loads only when a run is made

        fold = EventFold(hosts, on_host)
        # ansible-playbook from this interpreter's install first: a controller started without its
        # venv on PATH (a service unit, a test) still finds it.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
        thread, runner = ansible_runner.run_async(
            private_data_dir=str(self.private_data_dir), playbook=str(self.playbook),
            inventory=self.inventory, extravars=self.extravars, envvars={**self.envvars, "PATH": path},
            ident=self.ident,
            forks=self.forks, quiet=True,
            rotate_artifacts=ARTIFACTS_KEPT, suppress_env_files=True,
            event_handler=fold, cancel_callback=cancelled,
        )
        thread.join()
        return fold.finish(runner.rc, runner.status)
