"""`msspctl gateway wait` against a real controller: what provisioning's last step runs. It names
what is missing when it times out, fails at once on a revoked gateway and returns as soon as a
real agent (`mssp-agent enroll` + `run`, recording backend) is enrolled, online and converged."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway_agent import __version__
from tests.support.controller_proc import ControllerProc
from tests.test_cli import as_json, assert_failed, assert_ok
from tests.test_cli_lifecycle import agent_enroll

MSSP_AGENT = str(Path(sys.executable).parent / "mssp-agent")


def test_wait_times_out_naming_what_is_missing(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "wait-none"))
    assert_ok(run("gateway", "add", "wait-none/gw1"))
    started = time.monotonic()
    waited = run("gateway", "wait", "wait-none/gw1", "--timeout", "1", "--interval", "0.2",
                 "--agent-version", "0.2.0")
    assert time.monotonic() - started < 30
    assert_failed(waited, "wait-none/gw1 not enrolled after 1 s", "status pending", "last seen never",
                  "applied t0/g0, desired t", "agent version unknown, wanted 0.2.0")
    assert_failed(run("gateway", "wait", "wait-none/nope", "--timeout", "1"), "wait-none/nope")


def test_wait_returns_once_the_agent_converges(controller_proc: ControllerProc, tmp_path: Path) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "wait-ok"))
    token = as_json(run("gateway", "add", "wait-ok/gw1", "-o", "json"))
    assert isinstance(token, dict)
    state_dir = tmp_path / "agent"
    assert_ok(agent_enroll(controller_proc, token["enrollment_token"], state_dir))
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen([MSSP_AGENT, "run", "--state-dir", str(state_dir), "--backend", "recording",
                              "--heartbeat", "1"], env=controller_proc.env, stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        waited = run("gateway", "wait", "wait-ok/gw1", "--timeout", "60", "--interval", "0.2",
                     "--agent-version", __version__)
        assert_ok(waited)
        assert waited.stdout.count("\n") == 1, waited.stdout
        assert "wait-ok/gw1 enrolled, online, converged at" in waited.stdout
        shown = as_json(run("gateway", "wait", "wait-ok/gw1", "--timeout", "5", "-o", "json"))
        assert isinstance(shown, dict) and shown["converged"] is True and shown["online"] is True
        assert shown["agent_version"] == __version__

        wrong = run("gateway", "wait", "wait-ok/gw1", "--timeout", "1", "--agent-version", "9.9.9")
        assert_failed(wrong, "wait-ok/gw1 not on agent version 9.9.9 after 1 s",
                      f"agent version {__version__}, wanted 9.9.9")
        assert "not converged" not in wrong.stderr and "status" not in wrong.stderr
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(timeout=10)
        log.close()

    assert_ok(run("gateway", "revoke", "wait-ok/gw1"))
    started = time.monotonic()
    revoked = run("gateway", "wait", "wait-ok/gw1", "--timeout", "60")
    assert_failed(revoked, "wait-ok/gw1 is revoked", "msspctl gateway token wait-ok/gw1")
    assert time.monotonic() - started < 20, "a revoked gateway fails at once, not at the timeout"
