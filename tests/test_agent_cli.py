"""`mssp-agent`'s edge: an agent error is one line on stderr and exit 1; a bug keeps its traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway_agent import cli
from gateway_agent.backends.base import ApplyError, BackendError
from gateway_agent.dns.config import DnsError
from gateway_agent.enroll import EnrollError
from gateway_agent.errors import AgentError
from gateway_agent.identity import NotEnrolled
from gateway_agent.nft.config import CompileError
from gateway_agent.nft.native import RenderError
from gateway_agent.nft.runner import NftError
from gateway_agent.state import Invalid
from gateway_agent.statefile import StateFileError

IDENTITY = {"tenant_id": "t1", "tenant_name": "acme", "gateway_id": "g1", "gateway_name": "gw1",
            "controller": "203.0.113.5:7443", "gateway_endpoint": "203.0.113.5:7443",
            "nats_urls": ["nats://203.0.113.6:4222"], "signing_public_key_hex": "00" * 32}


def enrolled(state_dir: Path) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "identity.json").write_text(json.dumps(IDENTITY))
    return state_dir


@pytest.mark.parametrize("error", [ApplyError, BackendError, DnsError, EnrollError, NotEnrolled, NftError,
                                   StateFileError, Invalid, cli.CliError, CompileError, RenderError])
def test_agent_errors_share_one_base(error: type[Exception]) -> None:
    assert issubclass(error, AgentError)


def test_errors_caught_by_their_standard_base_keep_it() -> None:
    assert issubclass(CompileError, ValueError) and issubclass(RenderError, ValueError)


def test_not_enrolled_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--state-dir", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_unusable_backend_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = enrolled(tmp_path / "agent")
    (state_dir / "enforcement.json").write_text(json.dumps({"deny": "maybe"}))
    assert cli.main(["run", "--state-dir", str(state_dir), "--backend", "nft"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: nft backend: ") and err.count("\n") == 1


def test_unloadable_state_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = enrolled(tmp_path / "agent")
    (state_dir / "state").mkdir()
    (state_dir / "state" / "applied.snapshot").write_bytes(b"MSSPSF2\n" + b"\x00\x00\x00\x08" * 4)
    code = cli.main(["status", "--state-dir", str(state_dir)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1


def test_a_bug_is_not_swallowed(tmp_path: Path) -> None:
    """No AgentError: the exception leaves main() (and shows its traceback)."""
    state_dir = enrolled(tmp_path / "agent")
    (state_dir / "status.json").write_text("{not json")
    with pytest.raises(json.JSONDecodeError):
        cli.main(["status", "--state-dir", str(state_dir)])
