"""msspctl as an operator uses it.

Tests named test_live_* run against a real controller (`msspctl server run` subprocess, see
tests/support/controller_proc.py); the others need no server: argument parsing, local file
problems, unreachable or silent controllers. Every failure must be exit != 0 and exactly one
`error: ...` line on stderr.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli.args import parse_gateway_ref
from controller.cli.client import CliError
from controller.pki import CertificateAuthority
from tests.support.cli import in_process_cli
from tests.support.controller_proc import ControllerProc, clean_env, run_msspctl

VALID_POLICY = """\
default_action: allow
rules:
  - name: block-smb-out
    action: deny
    protocol: tcp
    ports: [445]
"""

MALFORMED_POLICY = """\
default_action: allow
rules:
  - name: bad-action
    action: explode
"""


# -- helpers -----------------------------------------------------------------------------------


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )


def assert_one_line_error(code: int, stderr: str, *needles: str) -> str:
    assert code != 0
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_failed(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    return assert_one_line_error(result.returncode, result.stderr, *needles)


def as_json(result: subprocess.CompletedProcess[str]) -> object:
    assert_ok(result)
    return json.loads(result.stdout)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run main() in-process with a clean MSSP_* environment; returns (exit code, stdout, stderr)."""
    return in_process_cli(monkeypatch, capsys)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir as a stopped controller leaves it: CA, token, controller.json with a dead address."""
    d = tmp_path / "data"
    CertificateAuthority.load_or_create(d / "pki")
    (d / "operator.token").write_text("mssp_op_test\n")
    (d / "controller.json").write_text(json.dumps({"grpc": f"127.0.0.1:{closed_port()}"}))
    return d


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts TCP connections and never speaks TLS: the client must give up at its deadline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"127.0.0.1:{s.getsockname()[1]}"


# -- no server needed -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["acme", "acme/", "/gw1", "acme/gw1/x", "", "/"])
def test_gateway_ref_rejects_malformed(raw: str) -> None:
    with pytest.raises(CliError, match="expected TENANT/NAME"):
        parse_gateway_ref(raw)


def test_gateway_ref_splits() -> None:
    assert parse_gateway_ref("acme/branch-1") == ("acme", "branch-1")


@pytest.mark.parametrize("verb", ["show", "revoke"])
def test_gateway_ref_error_before_connecting(cli, verb: str) -> None:
    code, _out, err = cli("--data-dir", "/nonexistent", "gateway", verb, "acme")
    assert code == 1
    assert_one_line_error(code, err, "expected TENANT/NAME", "'acme'")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["tenant", "show"], "Missing argument"),
        (["tenant", "list", "-o", "xml"], "xml"),
        (["tenant", "frobnicate"], "frobnicate"),
        (["ioc", "add", "1.2.3.4", "--confidence", "101"], "--confidence"),
        (["policy", "set", "acme"], "--file"),
    ],
)
def test_usage_errors_are_one_line(cli, argv: list[str], needle: str) -> None:
    code, _out, err = cli(*argv)
    assert code == 2
    assert_one_line_error(code, err, needle, "--help")


def test_help_exits_zero(cli) -> None:
    code, out, _err = cli("gateway", "add", "--help")
    assert code == 0
    assert "--token-ttl" in out


def test_bad_ttl_is_rejected_client_side(cli) -> None:
    code, _out, err = cli("--data-dir", "/nonexistent", "ioc", "add", "203.0.113.5", "--ttl", "5x")
    assert_one_line_error(code, err, "--ttl", "5x")


@pytest.mark.parametrize("case", ["missing", "directory", "binary"])
def test_unreadable_policy_file(cli, tmp_path: Path, case: str) -> None:
    path = tmp_path / "policy.yaml"
    if case == "directory":
        path.mkdir()
    elif case == "binary":
        path.write_bytes(b"default_action: \xff\xfe\n")
    code, _out, err = cli("--data-dir", str(tmp_path), "policy", "set", "acme", "-f", str(path))
    assert_one_line_error(code, err, "policy file", str(path))


def test_missing_controller_json(cli, tmp_path: Path) -> None:
    code, _out, err = cli("--data-dir", str(tmp_path), "tenant", "list")
    assert_one_line_error(code, err, str(tmp_path / "controller.json"), "msspctl server run", "--controller")


def test_data_dir_from_env(cli, tmp_path: Path) -> None:
    code, _out, err = cli("tenant", "list", env={"MSSP_DATA_DIR": str(tmp_path)})
    assert_one_line_error(code, err, str(tmp_path / "controller.json"))


def test_corrupt_controller_json(cli, data_dir: Path) -> None:
    (data_dir / "controller.json").write_text("{not json")
    code, _out, err = cli("--data-dir", str(data_dir), "tenant", "list")
    assert_one_line_error(code, err, "cannot read", "controller.json")


def test_missing_token_file(cli, data_dir: Path) -> None:
    (data_dir / "operator.token").unlink()
    code, _out, err = cli("--data-dir", str(data_dir), "tenant", "list")
    assert_one_line_error(code, err, str(data_dir / "operator.token"), "MSSP_OPERATOR_TOKEN")


def test_empty_token_file(cli, data_dir: Path) -> None:
    (data_dir / "operator.token").write_text("\n")
    code, _out, err = cli("--data-dir", str(data_dir), "tenant", "list")
    assert_one_line_error(code, err, "is empty")


def test_missing_ca(cli, data_dir: Path) -> None:
    (data_dir / "pki" / "ca.crt").unlink()
    code, _out, err = cli("--data-dir", str(data_dir), "tenant", "list")
    assert_one_line_error(code, err, "ca.crt", "MSSP_CA_CERT")


def test_ca_from_env_must_exist(cli, data_dir: Path, tmp_path: Path) -> None:
    code, _out, err = cli("--data-dir", str(data_dir), "tenant", "list",
                          env={"MSSP_CA_CERT": str(tmp_path / "nope.crt")})
    assert_one_line_error(code, err, "nope.crt", "MSSP_CA_CERT")


def test_unreachable_controller(cli, data_dir: Path) -> None:
    code, _out, err = cli("--data-dir", str(data_dir), "tenant", "list")
    assert_one_line_error(code, err, "cannot reach the controller at 127.0.0.1:", "msspctl server run")


def test_unreachable_controller_console_script(data_dir: Path) -> None:
    """The installed entry point, as a shell runs it: one line, no traceback."""
    result = run_msspctl("gateway", "list", env=clean_env(MSSP_DATA_DIR=str(data_dir)))
    assert result.returncode == 1
    assert_failed(result, "cannot reach the controller")


def test_controller_flag_overrides_controller_json(cli, data_dir: Path) -> None:
    port = closed_port()
    code, _out, err = cli("--data-dir", str(data_dir), "--controller", f"127.0.0.1:{port}", "tenant", "list")
    assert_one_line_error(code, err, f"127.0.0.1:{port}")


def test_silent_controller_times_out(cli, data_dir: Path, silent_server: str) -> None:
    code, _out, err = cli("--data-dir", str(data_dir), "--controller", silent_server, "tenant", "list",
                          env={"MSSP_TIMEOUT": "0.5"})
    assert_one_line_error(code, err, silent_server, "did not answer within 0.5s", "MSSP_TIMEOUT")


def test_bad_timeout_env(cli, data_dir: Path) -> None:
    code, _out, err = cli("--data-dir", str(data_dir), "tenant", "list", env={"MSSP_TIMEOUT": "soon"})
    assert_one_line_error(code, err, "MSSP_TIMEOUT")


def test_server_run_passes_only_given_flags(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = []
    fake_app = types.ModuleType("controller.serve")
    fake_app.run_server = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "controller.serve", fake_app)
    code, _out, err = cli(
        "server", "run", "--data-dir", str(tmp_path), "--grpc-listen", "127.0.0.1:9000",
        env={"MSSP_GRPC_LISTEN": "127.0.0.1:1111", "MSSP_GATEWAY_LISTEN": "127.0.0.1:2222"},
    )
    assert code == 0, err
    (settings,) = seen
    assert settings.data_dir == tmp_path
    assert settings.grpc_listen == "127.0.0.1:9000"  # flag beats env
    assert settings.gateway_listen == "127.0.0.1:2222"  # env kept when no flag
    assert settings.db_url is None


# -- against a real controller ----------------------------------------------------------------


def test_live_tenant_create_list_show(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    created = run("tenant", "create", "cli-acme", "--plan", "pro")
    assert_ok(created)
    assert "cli-acme" in created.stdout
    assert "cli-acme" in run("tenant", "list").stdout
    listed = as_json(run("tenant", "list", "-o", "json"))
    assert isinstance(listed, list)
    (acme,) = [t for t in listed if t["name"] == "cli-acme"]
    assert acme["plan"] == "pro" and acme["gateway_count"] == 0
    shown = as_json(run("tenant", "show", "cli-acme", "--output", "json"))
    assert isinstance(shown, dict) and shown["name"] == "cli-acme" and shown["id"] == acme["id"]
    table = run("tenant", "show", "cli-acme")
    assert_ok(table)
    assert "pro" in table.stdout


def test_live_duplicate_tenant(controller_proc: ControllerProc) -> None:
    assert_ok(controller_proc.run("tenant", "create", "cli-dup"))
    again = controller_proc.run("tenant", "create", "cli-dup")
    assert again.returncode == 1
    assert_failed(again, "cli-dup")


def test_live_unknown_tenant(controller_proc: ControllerProc) -> None:
    assert_failed(controller_proc.run("tenant", "show", "cli-nobody"), "cli-nobody")
    assert_failed(controller_proc.run("gateway", "add", "cli-nobody", "gw1"), "cli-nobody")
    assert_failed(controller_proc.run("policy", "show", "cli-nobody"), "cli-nobody")


def test_live_gateway_add_show_list_revoke(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "cli-gw"))
    added = run("gateway", "add", "cli-gw", "branch-1", "--token-ttl", "2h")
    assert_ok(added)
    match = re.search(r"mssp-agent enroll --controller (\S+) --token (\S+) --state-dir /var/lib/mssp-agent",
                      added.stdout)
    assert match, added.stdout
    assert match.group(1) == controller_proc.address
    assert len(match.group(2)) >= 16
    assert "expires" in added.stdout

    reply = as_json(run("gateway", "add", "cli-gw", "branch-2", "-o", "json"))
    assert isinstance(reply, dict) and reply["enrollment_token"]
    assert reply["gateway"]["name"] == "branch-2"
    assert reply["enrollment_token"] != match.group(2)

    shown = as_json(run("gateway", "show", "cli-gw/branch-1", "-o", "json"))
    assert isinstance(shown, dict) and shown["status"] == "pending" and shown["online"] is False
    assert "branch-1" in run("gateway", "show", "cli-gw/branch-1").stdout
    listed = as_json(run("gateway", "list", "--tenant", "cli-gw", "-o", "json"))
    assert isinstance(listed, list) and sorted(g["name"] for g in listed) == ["branch-1", "branch-2"]
    table = run("gateway", "list", "--tenant", "cli-gw")
    assert_ok(table)
    assert "branch-2" in table.stdout

    fleet = run("fleet", "status", "--tenant", "cli-gw")
    assert_ok(fleet)
    assert "2 gateways, 0 online, 0 converged" in fleet.stdout

    assert_ok(run("gateway", "revoke", "cli-gw/branch-2"))
    revoked = as_json(run("gateway", "show", "cli-gw/branch-2", "-o", "json"))
    assert isinstance(revoked, dict) and revoked["status"] == "revoked"
    assert_failed(run("gateway", "show", "cli-gw/nope"), "nope")


def test_live_policy_set_valid_then_malformed(controller_proc: ControllerProc, tmp_path: Path) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "cli-pol"))
    good = tmp_path / "good.yaml"
    good.write_text(VALID_POLICY)
    assert_ok(run("policy", "set", "cli-pol", "-f", str(good)))
    before = as_json(run("policy", "show", "cli-pol", "-o", "json"))
    assert isinstance(before, dict) and int(before["version"]) >= 1
    assert "block-smb-out" in before["yaml"]
    assert [r["name"] for r in before["bundle"]["rules"]] == ["block-smb-out"]
    shown = run("policy", "show", "cli-pol")
    assert_ok(shown)
    assert "block-smb-out" in shown.stdout and f"version {before['version']}" in shown.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(MALFORMED_POLICY)
    failed = run("policy", "set", "cli-pol", "-f", str(bad))
    assert failed.returncode == 1
    assert_failed(failed, "line 4")
    after = as_json(run("policy", "show", "cli-pol", "-o", "json"))
    assert after == before


def test_live_ioc_add_list_remove(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "cli-ioc"))
    assert_ok(run("ioc", "add", "203.0.113.77", "--ttl", "1h", "--source", "cli-test", "--confidence", "80"))
    assert_ok(run("ioc", "add", "evil-cli.example", "--scope", "tenant:cli-ioc"))

    def listed(*extra: str) -> list[dict]:
        data = as_json(run("ioc", "list", *extra, "-o", "json"))
        assert isinstance(data, list)
        return data

    everything = listed()
    (ip,) = [i for i in everything if i["ioc"]["value"] == "203.0.113.77"]
    assert ip["scope"] == "global" and ip["ioc"]["confidence"] == 80 and ip["ioc"]["source"] == "cli-test"
    assert int(ip["ioc"]["expires_at_ms"]) > 0
    assert [i["ioc"]["value"] for i in listed("--scope", "tenant:cli-ioc")] == ["evil-cli.example"]
    assert "203.0.113.77" in run("ioc", "list").stdout

    for bad in ("999.1.1.1", "not a domain!"):
        assert_failed(run("ioc", "add", bad), bad)
    assert_failed(run("ioc", "add", "198.51.100.9", "--scope", "tenant:"))
    assert listed() == everything

    removed = as_json(run("ioc", "remove", "203.0.113.77", "-o", "json"))
    assert isinstance(removed, dict) and removed["removed"] is True
    assert "203.0.113.77" not in [i["ioc"]["value"] for i in listed()]


def test_live_missing_token_file(controller_proc: ControllerProc, tmp_path: Path) -> None:
    env = clean_env(MSSP_DATA_DIR=str(tmp_path), MSSP_CONTROLLER=controller_proc.address,
                    MSSP_CA_CERT=str(controller_proc.data_dir / "pki" / "ca.crt"))
    result = controller_proc.run("tenant", "list", env=env)
    assert result.returncode == 1
    assert_failed(result, str(tmp_path / "operator.token"))


def test_live_wrong_token(controller_proc: ControllerProc) -> None:
    env = {**controller_proc.env, "MSSP_OPERATOR_TOKEN": "mssp_op_wrong"}
    result = controller_proc.run("tenant", "list", env=env)
    assert result.returncode == 1
    assert_failed(result, "MSSP_OPERATOR_TOKEN")


def test_live_unreachable_controller(controller_proc: ControllerProc) -> None:
    env = {**controller_proc.env, "MSSP_CONTROLLER": f"127.0.0.1:{closed_port()}"}
    assert_failed(controller_proc.run("fleet", "status", env=env), "cannot reach the controller")


def test_live_tls_name_and_localhost(controller_proc: ControllerProc) -> None:
    port = controller_proc.address.rpartition(":")[2]
    assert_ok(controller_proc.run("--controller", f"localhost:{port}", "tenant", "list"))
