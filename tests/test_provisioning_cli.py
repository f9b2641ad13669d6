"""`msspctl gateway provision` against a real controller, without root: bad input is refused before
anything runs (nothing created), an unreachable router fails with its task and message and a
non-zero exit, the run is kept with the host's result, and no secret stays behind."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.support.controller_proc import ControllerProc
from tests.support.provisioning import closed_port, empty_bundle, ssh_key
from tests.test_cli import as_json, assert_failed, assert_ok


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("provision-inputs")
    not_key = root / "not-a-key"
    not_key.write_text("hello\n")
    return {"key": ssh_key(root / "id_ed25519"), "bundle": empty_bundle(root / "bundle"), "not_key": not_key,
            "root": root}


def _gateways(proc: ControllerProc, tenant: str) -> list[str]:
    found = as_json(proc.run("gateway", "list", "--tenant", tenant, "-o", "json"))
    assert isinstance(found, list)
    return sorted(g["name"] for g in found)


def test_bad_input_is_refused_before_anything_runs(controller_proc: ControllerProc,
                                                   inputs: dict[str, Path]) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "prov-bad"))
    key, bundle = str(inputs["key"]), str(inputs["bundle"])
    hosts = inputs["root"] / "hosts.csv"
    hosts.write_text("name,host,port\nr1,192.0.2.11,22\nr2,192.0.2.12,22\nr1,192.0.2.13,22\n")
    common = ("--key", key, "--bundle", bundle)
    assert_failed(run("gateway", "provision", "--tenant", "prov-bad", "-f", str(hosts), *common),
                  "line 4", "'r1' is already on line 2")
    hosts.write_text("name,address\nr1,192.0.2.11\n")
    assert_failed(run("gateway", "provision", "--tenant", "prov-bad", "-f", str(hosts), *common),
                  "line 1", "no 'host' column")
    assert_failed(run("gateway", "provision", "-f", str(hosts), *common), "needs --tenant")
    assert_failed(run("gateway", "provision", "prov-bad/r1", *common), "--host")
    assert_failed(run("gateway", "provision", "prov-bad/r1", "--host", "192.0.2.11", "-f", str(hosts),
                      *common), "for one router", "for many")
    assert_failed(run("gateway", "provision", "prov-bad/r1", "--host", "192.0.2.11", "--key",
                      str(inputs["not_key"]), "--bundle", bundle), "not an SSH private key")
    assert_failed(run("gateway", "provision", "prov-bad/r1", "--host", "192.0.2.11", "--key",
                      str(inputs["root"] / "missing"), "--bundle", bundle), "cannot read --key")
    assert_failed(run("gateway", "provision", "prov-bad/r1", "--host", "192.0.2.11", "--key", key,
                      "--bundle", str(inputs["root"])), "not an agent bundle")
    assert_failed(run("gateway", "provision", "prov-bad/r1", "--host", "192.0.2.11", *common,
                      "--service", "runit"), "service manager 'runit'")
    assert_failed(run("gateway", "provision", "prov-bad/r1", "--host", "192.0.2.11", *common,
                      "--jump", "bastion"), "USER@HOST")
    assert_failed(run("gateway", "provision", "nobody/r1", "--host", "192.0.2.11", *common),
                  "unknown tenant")
    assert _gateways(controller_proc, "prov-bad") == []  # nothing was created by any of them


def test_an_unreachable_router_fails_with_its_task_and_leaves_no_secret(
        controller_proc: ControllerProc, inputs: dict[str, Path]) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "prov-down"))
    result = run("gateway", "provision", "prov-down/r1", "--host", "127.0.0.1", "--port", str(closed_port()),
                 "--key", str(inputs["key"]), "--bundle", str(inputs["bundle"]), "--service", "supervisor",
                 "-o", "json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["kind"] == "provision" and summary["status"] == "failed"
    (host,) = summary["hosts"]
    assert host["gateway"] == "r1" and host["state"] == "unreachable"
    assert "refused" in host["message"].lower() and host["task"]
    assert _gateways(controller_proc, "prov-down") == ["r1"]  # created, pending enrollment

    runs = as_json(run("gateway", "runs", "--tenant", "prov-down", "-o", "json"))
    assert isinstance(runs, list) and [r["id"] for r in runs] == [summary["id"]]
    assert runs[0]["hosts"][0]["state"] == "unreachable"
    secrets = controller_proc.data_dir / "provisioning" / "secrets"
    assert not secrets.exists() or list(secrets.iterdir()) == []
    kept = [p.read_bytes() for p in (controller_proc.data_dir / "provisioning").rglob("*") if p.is_file()]
    assert kept and not any(b"mssp_enr_" in t for t in kept)  # the token is nowhere in the run's files
    key_b64 = base64.b64encode(inputs["key"].read_bytes()).decode()
    audit = run("audit", "list", "--tenant", "prov-down", "-o", "json").stdout
    assert "Provision" in audit and key_b64[:40] not in audit and "(redacted)" in audit
