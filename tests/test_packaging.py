"""The agent installs lean: its code and its base dependencies never pull in the controller stack."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("sqlmodel", "sqlalchemy", "alembic", "fastapi", "ansible_runner", "typer", "rich", "yaml",
             "psycopg", "controller", "prometheus_client")

PROBE = f"""
import importlib, pkgutil, sys
import gateway_agent
for mod in pkgutil.walk_packages(gateway_agent.__path__, "gateway_agent."):
    importlib.import_module(mod.name)
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
print(",".join(loaded))
"""


def test_agent_modules_import_without_the_controller_stack() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"agent code imports {out.stdout.strip()}"


def test_base_dependencies_are_the_agent_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for name in ("sqlmodel", "fastapi", "ansible", "alembic", "psycopg", "typer", "prometheus"):
        assert name not in base
    assert "sqlmodel" in " ".join(project["optional-dependencies"]["controller"])
    assert "prometheus-client" in " ".join(project["optional-dependencies"]["controller"])
