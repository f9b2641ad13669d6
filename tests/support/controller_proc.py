"""Fixture: the real controller as an operator runs it (`msspctl server run` in a subprocess), and a
helper that runs msspctl against it exactly as a shell would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

MSSPCTL = str(Path(sys.executable).parent / "msspctl")
START_TIMEOUT = 60.0
# Settings read MSSP_* from the environment: keep the developer's own setup out of the tests.
_LEAKY = ("MSSP_CONTROLLER", "MSSP_OPERATOR_TOKEN", "MSSP_CA_CERT", "MSSP_TLS_SERVER_NAME", "MSSP_TIMEOUT",
          "MSSP_DB_URL", "MSSP_NATS_URL", "MSSP_AGENT_NATS_URL", "MSSP_GRPC_LISTEN", "MSSP_GATEWAY_LISTEN",
          "MSSP_ADVERTISE_HOST", "MSSP_DATA_DIR", "MSSP_API_LISTEN", "MSSP_API_TLS_CERT", "MSSP_API_TLS_KEY",
          "MSSP_API_INSECURE_HTTP", "MSSP_METRICS_LISTEN")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    env.update(extra)
    return env


def run_msspctl(*args: str, env: dict[str, str], input: str | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MSSPCTL, *args], env=env, input=input, capture_output=True, text=True,
                          timeout=timeout, check=False)


@dataclass
class ControllerProc:
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        return json.loads((self.data_dir / "controller.json").read_text())["grpc"]

    def run(self, *args: str, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """msspctl with this controller's env (pass env= to override it wholesale)."""
        return run_msspctl(*args, env=self.env if env is None else env, input=input)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _health_serving(address: str, ca_pem: bytes) -> bool:
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    with grpc.secure_channel(address, creds) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2.0
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _wait_ready(proc: ControllerProc) -> None:
    runtime = proc.data_dir / "controller.json"
    ca_file = proc.data_dir / "pki" / "ca.crt"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            pytest.fail(f"msspctl server run exited with {proc.process.returncode}:\n{proc.log_tail()}")
        if runtime.exists() and ca_file.exists():
            try:
                if _health_serving(proc.address, ca_file.read_bytes()):
                    return
            except (ValueError, KeyError):  # controller.json being replaced right now
                pass
        time.sleep(0.2)
    pytest.fail(f"controller not SERVING after {START_TIMEOUT:.0f}s:\n{proc.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def controller_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProc]:
    """One controller per test module (start-up costs a nats-server child); tests use unique names."""
    root = tmp_path_factory.mktemp("controller_proc")
    data_dir = root / "data"
    env = clean_env(MSSP_DATA_DIR=str(data_dir), MSSP_LOG_LEVEL="INFO")
    log_path = root / "controller.log"
    # Port 0: the kernel picks free ports with no race; controller.json reports the bound ones.
    cmd = [MSSPCTL, "server", "run", "--data-dir", str(data_dir),
           "--grpc-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    proc = ControllerProc(data_dir=data_dir, env=env, process=process, log_path=log_path)
    try:
        _wait_ready(proc)
        yield proc
    finally:
        _stop(process)
