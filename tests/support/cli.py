"""msspctl's main() run in-process, as a test fixture helper: a clean MSSP_* environment, the exit
code, stdout and stderr."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from controller.cli.main import main

Invoke = Callable[..., tuple[int, str, str]]


def in_process_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                   **env: str) -> Invoke:
    """Every MSSP_* variable removed (then `env` set); invoke(*argv, env=...) -> (code, out, err)."""
    for key in [k for k in os.environ if k.startswith("MSSP_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def invoke(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
        out, err = capsys.readouterr()
        code = exc.value.code
        return (code if isinstance(code, int) else 1), out, err

    return invoke
