"""Import direction, read from the source (every import statement, also inside functions):

* the agent never imports the controller;
* the controller imports the agent only where it runs real agents (demo, simulation);
* the neutral package `mssp` (wire code and mssp.common) imports the standard library, protobuf,
  grpc (generated stubs) and cryptography only, so both sides can depend on it and the agent stays lean.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGENT_USERS_IN_CONTROLLER = {"controller/simulation.py", "controller/demo.py"}
NEUTRAL_THIRD_PARTY = {"google", "grpc", "cryptography"}


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append(".")  # relative imports stay inside their own package
    return found


def sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def violations() -> list[str]:
    found: list[str] = []
    for path in sources("gateway_agent"):
        rel = path.relative_to(ROOT).as_posix()
        found += [f"{rel} imports {m}" for m in imported_modules(path) if m.split(".")[0] == "controller"]
    for path in sources("controller"):
        rel = path.relative_to(ROOT).as_posix()
        if rel in AGENT_USERS_IN_CONTROLLER:
            continue
        found += [f"{rel} imports {m}" for m in imported_modules(path) if m.split(".")[0] == "gateway_agent"]
    allowed = set(sys.stdlib_module_names) | NEUTRAL_THIRD_PARTY | {"mssp", "__future__", "."}
    for path in sources("protos/mssp"):
        rel = path.relative_to(ROOT).as_posix()
        found += [f"{rel} imports {m}" for m in imported_modules(path) if m.split(".")[0] not in allowed]
    return found


def test_imports_point_the_allowed_way() -> None:
    assert violations() == []


@pytest.mark.parametrize(("folder", "line", "expected"), [
    ("controller", "from gateway_agent.state import DesiredState", "imports gateway_agent.state"),
    ("gateway_agent", "import controller.service", "imports controller.service"),
    ("protos/mssp/common", "def f():\n    import sqlalchemy", "imports sqlalchemy"),
])
def test_a_new_violation_is_caught(folder: str, line: str, expected: str) -> None:
    probe = ROOT / folder / "_import_graph_probe.py"
    probe.write_text(f"{line}\n")
    try:
        assert any(expected in v and "_import_graph_probe" in v for v in violations())
    finally:
        probe.unlink()
