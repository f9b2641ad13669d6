"""msspctl run in-process against the in-process controller of tests/support/fleet.py: each call in a
thread (the controller serves on the test's event loop), with the controller's data dir for the
address, CA and operator credential."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from controller.simulation import SimulatedAgent
from gateway_agent.backends.recording import read_recorded
from tests.support.cli import in_process_cli
from tests.support.fleet import RunningController

AsyncCli = Callable[..., Awaitable[tuple[int, str, str]]]


def async_cli(ctl: RunningController, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str]) -> AsyncCli:
    invoke = in_process_cli(monkeypatch, capsys, MSSP_DATA_DIR=str(ctl.settings.data_dir))

    async def run(*argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(invoke, *argv)

    return run


async def ok(cli: AsyncCli, *argv: str) -> str:
    code, out, err = await cli(*argv)
    assert code == 0, f"{argv}: exit {code}\nstdout: {out}\nstderr: {err}"
    return out


async def ok_json(cli: AsyncCli, *argv: str) -> Any:
    return json.loads(await ok(cli, *argv, "-o", "json"))


async def failed(cli: AsyncCli, *argv: str) -> str:
    """The one `error: ...` line of a refused command."""
    code, out, err = await cli(*argv)
    assert code != 0, f"{argv} succeeded: {out}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def enforced(sim: SimulatedAgent) -> dict[str, Any]:
    """The policy the agent's recording backend was last given (what a kernel would enforce)."""
    path = sim.state_dir / "recording" / "desired.json"
    if not path.exists():
        return {}
    policy = read_recorded(sim.state_dir / "recording")["policy"]
    assert isinstance(policy, dict)
    return policy


def rule_names(policy: dict[str, Any]) -> list[str]:
    return [r["name"] for r in policy.get("rules", [])]
