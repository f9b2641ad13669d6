"""msspctl against a real controller (issue 9 item 4, IOC edits): `gateway token`, `gateway delete`,
`tenant set-plan`, `tenant delete`, and IOC adds and removes that say what they did. Enrollment is
the real `mssp-agent enroll`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.controller_proc import ControllerProc
from tests.test_cli import as_json, assert_failed, assert_ok

MSSP_AGENT = str(Path(sys.executable).parent / "mssp-agent")


def agent_enroll(proc: ControllerProc, token: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MSSP_AGENT, "enroll", "--controller", proc.address, "--token", token, "--state-dir", str(state_dir)],
        env=proc.env, capture_output=True, text=True, timeout=60, check=False,
    )


def token_in(stdout: str) -> str:
    match = re.search(r"mssp-agent enroll --controller \S+ --token (\S+) ", stdout)
    assert match, stdout
    return match.group(1)


def test_live_gateway_token_re_enroll_and_delete(controller_proc: ControllerProc, tmp_path: Path) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "cli-tok"))
    first = as_json(run("gateway", "add", "cli-tok", "gw1", "-o", "json"))
    assert isinstance(first, dict)
    reissued = run("gateway", "token", "cli-tok/gw1", "--token-ttl", "2h")
    assert_ok(reissued)
    assert "older unused tokens no longer work" in reissued.stdout
    second = token_in(reissued.stdout)
    assert second != first["enrollment_token"]

    stale = agent_enroll(controller_proc, first["enrollment_token"], tmp_path / "stale")
    assert stale.returncode != 0 and "expired" in stale.stderr, stale.stderr
    assert_ok(agent_enroll(controller_proc, second, tmp_path / "agent1"))
    enrolled = as_json(run("gateway", "show", "cli-tok/gw1", "-o", "json"))
    assert isinstance(enrolled, dict) and enrolled["status"] == "enrolled" and enrolled["cert_serial"]
    assert_failed(run("gateway", "token", "cli-tok/gw1"), "cli-tok/gw1", "revoke")
    assert as_json(run("gateway", "show", "cli-tok/gw1", "-o", "json")) == enrolled

    assert_ok(run("gateway", "revoke", "cli-tok/gw1"))
    renewed = as_json(run("gateway", "token", "cli-tok/gw1", "-o", "json"))
    assert isinstance(renewed, dict) and renewed["new_identity"] is True
    assert renewed["gateway"]["id"] != enrolled["id"] and renewed["gateway"]["status"] == "pending"
    assert_ok(agent_enroll(controller_proc, renewed["enrollment_token"], tmp_path / "agent2"))
    current = as_json(run("gateway", "list", "--tenant", "cli-tok", "-o", "json"))
    assert isinstance(current, list) and [(g["name"], g["status"]) for g in current] == [("gw1", "enrolled")]
    assert current[0]["cert_serial"] != enrolled["cert_serial"]

    assert_failed(run("gateway", "token", "cli-tok/nope"), "cli-tok/nope")
    assert_failed(run("gateway", "token", "cli-tok/gw1", "--token-ttl", "soon"), "--token-ttl")
    assert_failed(run("gateway", "delete", "cli-tok"), "TENANT/NAME")
    assert_failed(run("gateway", "delete", "cli-tok/nope"), "cli-tok/nope")
    deleted = run("gateway", "delete", "cli-tok/gw1")
    assert_ok(deleted)
    assert "deleted gateway cli-tok/gw1" in deleted.stdout
    assert_failed(run("gateway", "show", "cli-tok/gw1"), "unknown gateway cli-tok/gw1")
    assert as_json(run("gateway", "list", "--tenant", "cli-tok", "-o", "json")) == []


def test_live_tenant_set_plan_and_delete(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "cli-del"))
    moved = run("tenant", "set-plan", "cli-del", "pro")
    assert_ok(moved)
    assert "now on plan pro" in moved.stdout
    assert_failed(run("tenant", "set-plan", "cli-del", "gold"), "unknown plan", "gold")
    assert_failed(run("tenant", "set-plan", "cli-nobody", "pro"), "cli-nobody")
    shown = as_json(run("tenant", "show", "cli-del", "-o", "json"))
    assert isinstance(shown, dict) and shown["plan"] == "pro" and shown["sharing"] is False

    assert_failed(run("tenant", "set-sharing", "cli-del", "yes"), "'on' or 'off'", "yes")
    joined = run("tenant", "set-sharing", "cli-del", "on")
    assert_ok(joined)
    assert "cli-del is in the alliance" in joined.stdout
    assert "in the alliance" in run("tenant", "show", "cli-del").stdout
    assert_ok(run("ioc", "add", "203.0.113.94", "--scope", "alliance"))
    listed = as_json(run("ioc", "list", "--scope", "alliance", "-o", "json"))
    assert isinstance(listed, list) and [i["scope"] for i in listed] == ["alliance"]
    left = as_json(run("tenant", "set-sharing", "cli-del", "off", "-o", "json"))
    assert isinstance(left, dict) and left["sharing"] is False
    assert_failed(run("tenant", "set-sharing", "cli-nobody", "on"), "cli-nobody")

    assert_ok(run("gateway", "add", "cli-del", "gw1"))
    assert_ok(run("gateway", "add", "cli-del", "gw2"))
    assert_ok(run("ioc", "add", "198.51.100.93", "--scope", "tenant:cli-del"))
    deleted = run("tenant", "delete", "cli-del")
    assert_ok(deleted)
    assert "deleted tenant cli-del (2 gateways revoked" in deleted.stdout
    names = as_json(run("tenant", "list", "-o", "json"))
    assert isinstance(names, list) and "cli-del" not in [t["name"] for t in names]
    assert_failed(run("tenant", "show", "cli-del"), "cli-del")
    assert_failed(run("tenant", "delete", "cli-del"), "cli-del")
    assert_failed(run("tenant", "create", "cli-del"), "reserved")
    gateways = as_json(run("gateway", "list", "-o", "json"))
    assert isinstance(gateways, list) and all(g["tenant"] != "cli-del" for g in gateways)
    iocs = as_json(run("ioc", "list", "-o", "json"))
    assert isinstance(iocs, list) and all(i["scope"] != "tenant:cli-del" for i in iocs)


def test_live_ioc_refresh_and_remove_elsewhere(controller_proc: ControllerProc) -> None:
    run = controller_proc.run

    def record(value: str) -> dict:
        data = as_json(run("ioc", "list", "-o", "json"))
        assert isinstance(data, list)
        (found,) = [i for i in data if i["ioc"]["value"] == value]
        return found

    added = run("ioc", "add", "198.51.100.91", "--ttl", "7d", "--confidence", "90", "--source", "feed-x")
    assert_ok(added)
    assert added.stdout.startswith("added ")
    before = record("198.51.100.91")
    refreshed = run("ioc", "add", "198.51.100.91")
    assert_ok(refreshed)
    assert refreshed.stdout.startswith("refreshed ")
    after = record("198.51.100.91")
    assert after["ioc"] == before["ioc"] and int(after["seq"]) > int(before["seq"])
    forever = as_json(run("ioc", "add", "198.51.100.91", "--ttl", "never", "-o", "json"))
    assert isinstance(forever, dict) and forever["refreshed"] is True
    assert int(forever["ioc"]["expires_at_ms"]) == 0 and forever["ioc"]["source"] == "feed-x"
    assert_failed(run("ioc", "add", "198.51.100.91", "--ttl", "forever"), "--ttl")
    assert record("198.51.100.91")["ioc"] == forever["ioc"]

    assert_ok(run("tenant", "create", "cli-held"))
    assert_ok(run("ioc", "add", "203.0.113.91", "--scope", "tenant:cli-held"))
    missed = run("ioc", "remove", "203.0.113.91")
    assert_ok(missed)
    assert "not in global; held in tenant:cli-held" in missed.stdout
    reply = as_json(run("ioc", "remove", "203.0.113.91", "-o", "json"))
    assert isinstance(reply, dict) and reply["removed"] is False and reply["held_in"] == ["tenant:cli-held"]
    assert record("203.0.113.91")["scope"] == "tenant:cli-held"
    assert_ok(run("ioc", "remove", "203.0.113.91", "--scope", "tenant:cli-held"))


def test_live_sighting_commands(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "cli-fp"))
    assert as_json(run("sighting", "list", "--since", "all", "-o", "json")) == []
    assert_failed(run("sighting", "list", "--state", "maybe"), "unknown sighting state", "maybe")
    assert_failed(run("sighting", "list", "--since", "soon"), "--since")
    assert_failed(run("sighting", "show", "abc"), "at least 6 characters")
    assert_failed(run("sighting", "promote", "abcdef"), "unknown sighting 'abcdef'")
    reported = run("sighting", "false-positive", "198.51.100.250", "--tenant", "cli-fp")
    assert_ok(reported)
    assert "198.51.100.250 is now exempt for cli-fp" in reported.stdout
    again = as_json(run("sighting", "false-positive", "198.51.100.250", "--tenant", "cli-fp", "-o", "json"))
    assert isinstance(again, dict) and again["new"] is False and again["withdrawn"] is False
    bad = run("sighting", "false-positive", "not an indicator", "--tenant", "cli-fp")
    assert_failed(bad, "not an indicator")
    assert_failed(run("sighting", "false-positive", "198.51.100.250", "--tenant", "cli-nobody"), "cli-nobody")
