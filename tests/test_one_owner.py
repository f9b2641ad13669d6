"""One owner for every data dir, state dir and port, and secrets printed whole (issue 9, items 2 and 5).

A second controller on a data dir used to start and, on exit, delete the first one's controller.json;
two controllers in different data dirs both listened on one port (gRPC's default SO_REUSEPORT) and
CLI calls reached either at random; two agents ran on one state dir; the enrollment-token panel
folded the token at 80 columns and cropped it at 120.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.app import ControllerApp
from controller.domain.errors import ListenError
from controller.nats.auth import NatsIdentity
from controller.nats.revocation import RevocationSync
from controller.pki import ca_fingerprint
from gateway_agent import cli as agent_cli
from mssp.common.dirlock import DirLocked, holder_pid, lock_dir
from tests.support.controller_proc import ControllerProc, clean_env, run_msspctl
from tests.support.fleet import RunningController, controller_settings

MSSP_AGENT = str(Path(sys.executable).parent / "mssp-agent")


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def stop_process(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


# -- the lock itself -----------------------------------------------------------------------------


def test_a_held_directory_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    lock = lock_dir(tmp_path, holder="controller", name="x.lock")
    try:
        assert holder_pid(tmp_path / "x.lock") == os.getpid()
        named = rf"another controller .*{re.escape(str(tmp_path))}.*pid {os.getpid()}"
        with pytest.raises(DirLocked, match=named):
            lock_dir(tmp_path, holder="controller", name="x.lock")  # a second descriptor: refused too
    finally:
        lock.release()
    with lock_dir(tmp_path, holder="controller", name="x.lock") as again:  # given up: free again
        assert again.held
    assert (tmp_path / "x.lock").exists()  # never unlinked (a fresh inode would be a second lock)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from mssp.common.dirlock import lock_dir\n"
            "lock = lock_dir(Path(sys.argv[1]), holder='agent'); print('held', flush=True); time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(DirLocked) as refused:
            lock_dir(tmp_path, holder="agent")
        assert refused.value.pid == child.pid and f"pid {child.pid}" in str(refused.value)
    finally:
        child.kill()
        child.wait(timeout=10)
    with lock_dir(tmp_path, holder="agent"):  # SIGKILL dropped the flock with the process
        assert holder_pid(tmp_path / ".lock") == os.getpid()


# -- one controller per data dir (in process) ------------------------------------------------------


async def test_a_second_controller_on_the_data_dir_is_refused_and_touches_nothing(
    controller: RunningController,
) -> None:
    runtime = controller.settings.runtime_file
    before = runtime.read_bytes()
    second = ControllerApp(controller.settings)
    try:
        with pytest.raises(DirLocked, match=f"pid {os.getpid()}"):
            await second.start()
    finally:
        await second.stop()
    assert runtime.read_bytes() == before  # the refused one neither rewrote nor deleted it
    await controller.op.create_tenant("still-serving")
    assert holder_pid(controller.settings.lock_file) == os.getpid()


async def test_a_stopped_controller_gives_the_data_dir_up(controller: RunningController) -> None:
    await controller.op.close()
    await controller.app.stop()
    assert not controller.settings.runtime_file.exists()  # its own file: removed
    with lock_dir(controller.settings.data_dir, holder="controller", name="controller.lock"):
        pass


@pytest.mark.parametrize("listener", ["grpc_listen", "gateway_listen"])
async def test_a_port_in_use_is_refused_naming_the_address(
    controller: RunningController, tmp_path: Path, listener: str
) -> None:
    taken = controller.app.grpc_address if listener == "grpc_listen" else controller.app.gateway_address
    settings = controller_settings(tmp_path / "second").model_copy(update={listener: taken})
    second = ControllerApp(settings)
    try:
        with pytest.raises(ListenError, match=re.escape(f"cannot listen on {taken}")):
            await second.start()
    finally:
        await second.stop()
    assert not settings.runtime_file.exists()
    with lock_dir(settings.data_dir, holder="controller", name="controller.lock"):  # released
        pass
    await controller.op.create_tenant(f"first-{listener.replace('_', '-')}")  # the first one still answers


async def test_revocation_sync_stops_even_when_a_cancel_is_swallowed(tmp_path: Path) -> None:
    """A refused start stops everything at once: nats-py's request can swallow the cancel (3.11
    wait_for) that lands as a reply arrives, and the loop then waited out its period forever."""
    sync = RevocationSync(NatsIdentity.load_or_create(tmp_path / "keys"), dict, dict,
                          tmp_path / "system.creds", state_file=tmp_path / "state.json")
    entered = asyncio.Event()

    async def swallowing(*, force_push: bool = False) -> bool:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # what a swallowed cancel looks like to the loop: the pass just "failed"
        return False

    sync.reconcile = swallowing  # type: ignore[method-assign]
    await sync.start()
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(sync.stop(), 5)


# -- the same through `msspctl server run` ---------------------------------------------------------


def test_msspctl_server_run_refuses_a_data_dir_in_use(controller_proc: ControllerProc) -> None:
    runtime = controller_proc.data_dir / "controller.json"
    before = runtime.read_bytes()
    second = run_msspctl("server", "run", "--data-dir", str(controller_proc.data_dir),
                         "--grpc-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0",
                         env=controller_proc.env, timeout=90)
    line = one_error_line(second)
    assert f"pid {controller_proc.process.pid}" in line and str(controller_proc.data_dir) in line
    assert runtime.read_bytes() == before
    assert controller_proc.process.poll() is None
    listed = controller_proc.run("tenant", "list")
    assert listed.returncode == 0, listed.stderr


def test_msspctl_server_run_refuses_a_port_in_use(controller_proc: ControllerProc, tmp_path: Path) -> None:
    other = tmp_path / "other"
    second = run_msspctl("server", "run", "--data-dir", str(other),
                         "--grpc-listen", controller_proc.address, "--gateway-listen", "127.0.0.1:0",
                         env=clean_env(MSSP_DATA_DIR=str(other)), timeout=90)
    line = one_error_line(second)
    assert f"cannot listen on {controller_proc.address}" in line
    assert not (other / "controller.json").exists()
    listed = controller_proc.run("tenant", "list")  # still the first controller, with its own CA
    assert listed.returncode == 0, listed.stderr


# -- the enrollment token, whole at any width ------------------------------------------------------


@pytest.fixture(scope="module")
def token_tenant(controller_proc: ControllerProc) -> str:
    created = controller_proc.run("tenant", "create", "owner-tok")
    assert created.returncode == 0, created.stderr
    return "owner-tok"


def token_pattern(controller_proc: ControllerProc) -> str:
    fingerprint = ca_fingerprint((controller_proc.data_dir / "pki" / "ca.crt").read_bytes())
    return r"mssp_enr_[A-Za-z0-9_-]{43}\." + re.escape(fingerprint)


@pytest.mark.parametrize("columns", [40, 80, 120])
def test_the_token_is_printed_whole_at_any_width(
    controller_proc: ControllerProc, token_tenant: str, tmp_path: Path, columns: int
) -> None:
    env = {**controller_proc.env, "COLUMNS": str(columns)}
    added = controller_proc.run("gateway", "add", token_tenant, f"w{columns}", env=env)
    assert added.returncode == 0, added.stderr
    pattern = token_pattern(controller_proc)
    alone = [line for line in added.stdout.splitlines() if re.fullmatch(pattern, line.strip())]
    assert len(alone) == 1, added.stdout  # on one line, unbroken, nothing beside it
    token = alone[0].strip()
    command = f"  mssp-agent enroll --controller {controller_proc.address} --token {token} " \
              "--state-dir /var/lib/mssp-agent"
    assert command in added.stdout.splitlines(), added.stdout
    if columns == 40:  # pasted as printed, it enrolls
        enrolled = subprocess.run(
            [MSSP_AGENT, "enroll", "--controller", controller_proc.address, "--token", token,
             "--state-dir", str(tmp_path / "agent")],
            env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
        )
        assert enrolled.returncode == 0, enrolled.stderr


def test_the_json_token_is_whole(controller_proc: ControllerProc, token_tenant: str) -> None:
    env = {**controller_proc.env, "COLUMNS": "40"}
    added = controller_proc.run("gateway", "add", token_tenant, "w-json", "-o", "json", env=env)
    assert added.returncode == 0, added.stderr
    match = re.search(r'"enrollment_token": "([^"]+)"', added.stdout)
    assert match and re.fullmatch(token_pattern(controller_proc), match.group(1)), added.stdout


# -- one agent per state dir -----------------------------------------------------------------------


@pytest.fixture
def enrolled_state_dir(controller_proc: ControllerProc, token_tenant: str, tmp_path: Path) -> Path:
    added = controller_proc.run("gateway", "add", token_tenant, "two-agents", "-o", "json")
    assert added.returncode == 0, added.stderr
    match = re.search(r'"enrollment_token": "([^"]+)"', added.stdout)
    assert match, added.stdout
    state_dir = tmp_path / "agent"
    enrolled = subprocess.run(
        [MSSP_AGENT, "enroll", "--controller", controller_proc.address, "--token", match.group(1),
         "--state-dir", str(state_dir)],
        env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    return state_dir


@pytest.fixture
def running_agent(enrolled_state_dir: Path, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (tmp_path / "agent1.log").open("wb") as log:
        first = subprocess.Popen(
            [MSSP_AGENT, "run", "--state-dir", str(enrolled_state_dir), "--backend", "recording"],
            env=clean_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        lock_file = enrolled_state_dir / agent_cli.LOCK_FILE
        deadline = time.monotonic() + 30
        while holder_pid(lock_file) != first.pid:
            assert first.poll() is None, (tmp_path / "agent1.log").read_text()
            assert time.monotonic() < deadline, "the first agent never took its lock"
            time.sleep(0.1)
        yield first
    finally:
        stop_process(first)


def test_a_second_agent_on_the_state_dir_is_refused(
    running_agent: subprocess.Popen[bytes], enrolled_state_dir: Path
) -> None:
    second = subprocess.run(
        [MSSP_AGENT, "run", "--state-dir", str(enrolled_state_dir), "--backend", "recording"],
        env=clean_env(), capture_output=True, text=True, timeout=30, check=False,
    )
    line = one_error_line(second)
    assert f"another agent is already running on {enrolled_state_dir} (pid {running_agent.pid})" in line
    assert second.stderr.strip() == line  # nothing else: it never started
    assert running_agent.poll() is None
    assert stop_process(running_agent) == 0
    with lock_dir(enrolled_state_dir, holder="agent", name=agent_cli.LOCK_FILE):  # given up on exit
        pass
