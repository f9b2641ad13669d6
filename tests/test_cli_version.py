"""Both CLIs say their version, and msspctl prints shell completion (issue 9's operator basics)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60,
                          check=False)


def test_both_clis_print_their_version() -> None:
    version = metadata.version("mssp-gateway")
    ctl, agent = run("msspctl", "--version"), run("mssp-agent", "--version")
    assert (ctl.returncode, ctl.stdout.strip()) == (0, f"msspctl {version}")
    assert (agent.returncode, agent.stdout.strip()) == (0, f"mssp-agent {version}")


def test_msspctl_prints_a_completion_script() -> None:
    script = run("msspctl", "--show-completion", "bash")
    assert script.returncode == 0 and "complete" in script.stdout and "msspctl" in script.stdout
