"""The agent's log serves a router: one line per change of what it knows (NATS connected or not,
controller reachable or not, certificate refused), not one per failed attempt, and `mssp-agent
status` says how old each fact is and that the gateway was revoked. Real controller, broker, agent."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.simulation import wait_until
from gateway_agent import cli, status_view
from mssp.common.clock import now_ms
from mssp.common.dirlock import lock_dir
from mssp.v1 import operator_pb2
from tests.support.fleet import RunningController

WAIT = 30.0


def _lines(caplog: pytest.LogCaptureFixture, text: str, level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mssp.agent" and text in r.getMessage()
            and (level is None or r.levelno == level)]


async def test_revoked_gateway_says_so_once(controller: RunningController, caplog: pytest.LogCaptureFixture,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO, logger="mssp.agent")
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "gw0")  # heartbeat every 2 s
    await wait_until(lambda: sim.agent.synced.is_set() and sim.agent.nats_connected, within=WAIT)
    await controller.op.add_ioc("203.0.113.31")
    await wait_until(lambda: "203.0.113.31" in sim.ioc_values(), within=WAIT)
    assert len(_lines(caplog, ": NATS connected")) == 1
    assert len(_lines(caplog, ": controller reachable")) == 1
    assert _lines(caplog, "applied global#") and _lines(caplog, "resynced: applied")

    await controller.op.call("RevokeGateway", operator_pb2.GatewayRef(tenant="acme", name="gw0"))
    await wait_until(lambda: sim.agent.revoked, within=WAIT)
    status_path = sim.agent.identity.state_dir / "status.json"
    await wait_until(lambda: status_path.exists() and json.loads(status_path.read_text())["revoked"],
                     within=WAIT)
    await asyncio.sleep(5)  # two more refused heartbeats: still one line
    assert len(_lines(caplog, "refused our certificate", logging.ERROR)) == 1
    assert "203.0.113.31" in sim.ioc_values()  # fail-static: the last state stays in force

    assert cli.main(["status", "--state-dir", str(sim.agent.identity.state_dir)]) == 0
    shown = capsys.readouterr().out
    assert "revoked: YES, since" in shown and "refused this gateway's certificate" in shown
    assert "agent: running (pid" in shown and "last push applied: " in shown


async def test_controller_away_is_one_line_not_a_flood(controller: RunningController,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mssp.agent")
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "gw0")
    await wait_until(lambda: sim.agent.synced.is_set() and sim.agent.nats_connected, within=WAIT)
    caplog.clear()
    await controller.app.stop()
    await wait_until(lambda: not sim.agent.controller_reachable and not sim.agent.nats_connected, within=WAIT)
    await asyncio.sleep(8)  # four failed heartbeats and many reconnect attempts
    assert len(_lines(caplog, "controller unreachable")) == 1
    assert len(_lines(caplog, "NATS disconnected")) == 1
    warnings = [r for r in caplog.records if r.name.startswith("mssp.agent") and r.levelno == logging.WARNING]
    assert len(warnings) <= 3, [r.getMessage() for r in warnings]  # at most one a minute per kind
    assert not sim.agent.revoked  # away is not refused


def test_status_view_says_how_old_and_whether_the_agent_runs() -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    now = now_ms()
    status: dict[str, object] = {
        "pid": int(gone.stdout), "updated_at_ms": now - 3 * 3600_000, "nats_connected": True,
        "controller_reachable": False, "revoked": False,
        "since_ms": {"nats_connected": now - 90_000, "controller_reachable": now - 5_000},
        "last_ms": {"applied": now - 120_000},
    }
    rows = dict(status_view.lines(status, now))
    assert rows["agent"].startswith("NOT running") and "from 3h ago" in rows["agent"]
    assert rows["nats_connected"] == "yes (since 1m ago)"
    assert rows["controller_reachable"] == "no (since 5s ago)"
    assert rows["last push applied"] == "2m ago" and rows["last resync"] == "never"
    assert "revoked" not in rows
    fresh = status_view.freshness(status, now)
    assert fresh == {"agent_running": False, "status_age_ms": 3 * 3600_000}
    assert dict(status_view.lines({}, now))["agent"] == "has not run with this state dir yet"


def test_status_asks_the_state_dir_lock_not_a_pid_that_may_be_reused(tmp_path: Path) -> None:
    lock = tmp_path / cli.LOCK_FILE
    status: dict[str, object] = {"pid": os.getpid(), "updated_at_ms": now_ms()}  # a live pid
    assert status_view.running(os.getpid())  # the pid alone would say "running"
    assert status_view.running(os.getpid(), lock)  # no lock file to ask: the pid is all there is
    lock.write_text(f"{os.getpid()}\n")
    assert status_view.freshness(status, now_ms(), lock)["agent_running"] is False  # nobody holds it
    with lock_dir(tmp_path, holder="agent", name=cli.LOCK_FILE):
        assert dict(status_view.lines(status, now_ms(), lock))["agent"].startswith("running")
    assert dict(status_view.lines(status, now_ms(), lock))["agent"].startswith("NOT running")
