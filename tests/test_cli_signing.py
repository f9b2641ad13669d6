"""msspctl against a real controller: `signing-key list` / `rotate` (bad input changes nothing) and the
certificate columns of `fleet status` and `gateway show` for a gateway the real `mssp-agent` enrolled
(added as TENANT/NAME, the one grammar for gateways)."""

from __future__ import annotations

from pathlib import Path

from mssp.common.clock import now_ms
from tests.support.controller_proc import ControllerProc
from tests.test_cli import as_json, assert_failed, assert_ok
from tests.test_cli_lifecycle import agent_enroll, token_in


def test_signing_key_rotate_and_list(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    first = as_json(run("signing-key", "list", "-o", "json"))
    assert isinstance(first, dict) and len(first["keys"]) == 1 and first["keys"][0]["active"] is True
    for bad in ("soon", "0s", "-5m"):
        assert_failed(run("signing-key", "rotate", "--overlap", bad), "--overlap")
    assert as_json(run("signing-key", "list", "-o", "json")) == first

    rotated = run("signing-key", "rotate", "--overlap", "1h")
    assert_ok(rotated)
    assert "is active; announced to the fleet" in rotated.stdout
    keys = as_json(run("signing-key", "list", "-o", "json"))
    assert isinstance(keys, dict) and len(keys["keys"]) == 2
    new, old = keys["keys"]  # newest first
    assert new["active"] is True and old.get("active", False) is False
    assert old["key_id"] == first["keys"][0]["key_id"] and new["key_id"] != old["key_id"]
    assert 3500_000 < old["retires_at_ms"] - now_ms() <= 3600_000
    table = run("signing-key", "list")
    assert_ok(table)
    assert new["key_id"] in table.stdout and old["key_id"] in table.stdout


def test_fleet_status_shows_certificate_expiry(controller_proc: ControllerProc, tmp_path: Path) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "cli-cert"))
    assert_failed(run("gateway", "add", "cli-cert"), "TENANT/NAME")  # one grammar: TENANT/NAME
    assert_failed(run("gateway", "add", "cli-cert/a/b"), "TENANT/NAME")
    added = run("gateway", "add", "cli-cert/gw1")
    assert_ok(added)
    assert_ok(agent_enroll(controller_proc, token_in(added.stdout), tmp_path / "agent"))
    shown = as_json(run("gateway", "show", "cli-cert/gw1", "-o", "json"))
    assert isinstance(shown, dict)
    days = (shown["cert_not_after_ms"] - now_ms()) / 86400_000
    assert 396 < days <= 397 and shown.get("renewal_overdue", False) is False
    status = run("fleet", "status", "--tenant", "cli-cert")
    assert_ok(status)
    assert "certificate expires" in status.stdout and "in 396d" in status.stdout, status.stdout
    assert "failed to renew" not in status.stdout
    detail = run("gateway", "show", "cli-cert/gw1")
    assert_ok(detail)
    assert "cert expires" in detail.stdout and "cert renewed" in detail.stdout
