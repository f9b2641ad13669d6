"""Global options work after the subcommand too (`msspctl tenant list --data-dir D`), except where
the command has an option of that name itself, and nothing after `--` is touched."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from controller.cli.global_options import hoist
from controller.cli.main import app
from tests.support.controller_proc import ControllerProc, clean_env
from tests.test_cli import as_json, assert_failed, assert_ok

ROOT = typer.main.get_command(app)


def test_global_options_are_moved_in_front_of_the_command() -> None:
    assert hoist(ROOT, ["tenant", "list", "--data-dir", "/d", "-o", "json"]) == [
        "--data-dir", "/d", "tenant", "list", "-o", "json"]
    assert hoist(ROOT, ["--timeout", "3", "tenant", "list", "--controller=h:1"]) == [
        "--controller=h:1", "--timeout", "3", "tenant", "list"]
    assert hoist(ROOT, ["server", "run", "--data-dir", "/d"]) == ["server", "run", "--data-dir", "/d"]
    untouched = ["ioc", "add", "x", "--", "--timeout", "1"]
    assert hoist(ROOT, untouched) == untouched
    assert hoist(ROOT, ["no-such", "--data-dir", "/d"]) == ["no-such", "--data-dir", "/d"]


def test_data_dir_and_controller_after_the_subcommand(controller_proc: ControllerProc) -> None:
    env = clean_env()  # no MSSP_DATA_DIR: the flag alone must find the controller
    data_dir = str(controller_proc.data_dir)
    assert_ok(controller_proc.run("tenant", "create", "grammar-acme", "--data-dir", data_dir, env=env))
    listed = as_json(controller_proc.run("tenant", "list", "-o", "json", "--data-dir", data_dir,
                                         "--controller", controller_proc.address, "--timeout", "20", env=env))
    assert "grammar-acme" in {t["name"] for t in listed}  # type: ignore[union-attr]
    assert_failed(controller_proc.run("tenant", "list", "--data-dir", data_dir, "--timeout", "-1", env=env),
                  "timeout")


def test_a_policy_with_several_mistakes_lists_every_one(controller_proc: ControllerProc,
                                                        tmp_path: Path) -> None:
    run = controller_proc.run
    assert_ok(run("tenant", "create", "grammar-policy"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("default_action: allow\nrules:\n  - action: deny\n    cidrs: [10.0.0.1/8]\n    bogus: 1\n"
                   "  - action: maybe\n")
    table = run("policy", "set", "grammar-policy", "-f", str(bad))
    assert_failed(table, "3 problems: line 4:", "line 5:", "line 6:")
    as_data = run("policy", "set", "grammar-policy", "-f", str(bad), "-o", "json")
    assert as_data.returncode == 1
    problems = json.loads(as_data.stdout)["problems"]
    assert [p.split(":")[0] for p in problems] == ["line 4", "line 5", "line 6"]
    assert as_json(run("policy", "show", "grammar-policy", "-o", "json"))["version"] == 0  # type: ignore[index]
