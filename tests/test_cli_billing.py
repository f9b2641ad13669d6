"""`msspctl billing` and `msspctl apikey` against a real `msspctl server run` (subprocess, embedded
nats-server, SQLite): a plans file in the data dir prices the month, closing freezes it (a price
change afterwards does not rewrite it), the tenant API serves the same figures to a key the CLI made,
and every refused close or bad period exits 1 with one line and changes nothing."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.controller_proc import ControllerProc, clean_env, run_msspctl

TENANT = "cli-bill"
JUNE, JULY, AUG = "2025-06", "2025-07", "2025-08"  # long over: closable


def plans(fee: str) -> str:
    return f"""currency: USD
plans:
  standard:
    monthly_fee: "{fee}"
    included_gateways: 1
    included_egress_gb: "10"
    gateway_day_price: "2.00"
    egress_gb_price: "0.10"
"""


def shown(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, shown(result)
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], *needles: str, logs: bool = False) -> None:
    """Exit 1 with one `error:` line (after the start-up log lines, for a server)."""
    assert result.returncode == 1, shown(result)
    line = result.stderr.strip().splitlines()[-1] if logs else result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in line, line


def export(proc: ControllerProc, period: str) -> dict[str, Any]:
    return json.loads(ok(proc.run("billing", "export", "--period", period, "-o", "json")))  # type: ignore[no-any-return]


def get(url: str, key: str | None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_billing_close_freezes_and_the_api_serves_the_same_figures(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    ok(run("tenant", "create", TENANT))
    tenant_id = json.loads(ok(run("tenant", "show", TENANT, "-o", "json")))["id"]
    plans_file = controller_proc.data_dir / "plans.yaml"
    plans_file.write_text(plans("12.34"))

    rows = list(csv.DictReader(io.StringIO(ok(run("billing", "export", "--period", JUNE, "-o", "csv")))))
    mine = {r["meter"]: r for r in rows if r["tenant"] == TENANT}
    assert set(mine) == {"base", "gateway_days", "egress_gb"}
    assert mine["base"]["id"] == f"{tenant_id}:{JUNE}:base"
    assert (mine["base"]["amount"], mine["base"]["currency"]) == ("12.34", "USD")
    assert mine["gateway_days"]["amount"] in ("0", "0.00")
    assert not export(controller_proc, JUNE)["closed"]

    closed = json.loads(ok(run("billing", "close", "--period", JUNE, "-o", "json")))
    assert closed["closed"] and int(closed["closed_at_ms"]) > 0
    assert {line["id"] for line in closed["lines"] if line["tenant"] == TENANT} == {
        r["id"] for r in mine.values()}

    plans_file.write_text(plans("99.00"))  # a later price change
    june = export(controller_proc, JUNE)
    assert june["closed"] and [line["amount"] for line in june["lines"]
                               if line["tenant"] == TENANT and line["meter"] == "base"] == ["12.34"]
    july = export(controller_proc, JULY)
    assert not july["closed"] and [line["amount"] for line in july["lines"]
                                   if line["tenant"] == TENANT and line["meter"] == "base"] == ["99.00"]

    key = json.loads(ok(run("apikey", "create", TENANT, "--scope", "usage:read", "-o", "json")))["key"]
    api = json.loads((controller_proc.data_dir / "controller.json").read_text())["api"]
    status, usage = get(f"{api}/v1/usage?period={JUNE}", key)
    assert status == 200 and usage["closed"] and usage["total"] == "12.34" and usage["currency"] == "USD"
    status, problem = get(f"{api}/v1/usage?period={JUNE}", None)
    assert status == 401 and problem["status"] == 401


def test_refused_closes_and_bad_periods_change_nothing(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    if not export(controller_proc, JUNE)["closed"]:  # closed by the test above, unless run alone
        ok(run("billing", "close", "--period", JUNE))
    before = export(controller_proc, JULY)
    refused(run("billing", "close", "--period", AUG), "close 2025-07 first")
    refused(run("billing", "close", "--period", "2999-01"), "not over yet")
    refused(run("billing", "export", "--period", "2025-13"), "YYYY-MM")
    refused(run("billing", "close", "--period", "june"), "YYYY-MM")
    refused(run("billing", "close", "--period", JUNE), "already closed")
    assert export(controller_proc, AUG)["closed"] is False
    assert export(controller_proc, JULY) == before


def test_server_refuses_a_bad_plans_file(tmp_path: Path) -> None:
    bad = tmp_path / "plans.yaml"
    bad.write_text(plans("ten"))
    args = ("server", "run", "--data-dir", str(tmp_path / "data"), "--grpc-listen", "127.0.0.1:0",
            "--gateway-listen", "127.0.0.1:0", "--api-listen", "off")
    env = clean_env()
    refused(run_msspctl(*args, "--plans-file", str(bad), env=env), str(bad), "monthly_fee",
            logs=True)
    refused(run_msspctl(*args, "--plans-file", str(tmp_path / "absent.yaml"), env=env), "no such file")
    assert not (tmp_path / "data" / "controller.json").exists()
