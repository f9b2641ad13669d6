"""`mssp-agent enroll --token-file` (what provisioning copies to the router) and `mssp-agent
uninstall` (what decommissioning runs): the token file is consumed by a successful enrollment only;
uninstall takes the table and the agent's dnsmasq down, in a namespace of its own, and refuses
while an agent runs on the state dir."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_agent import cli
from mssp.common.dirlock import lock_dir
from tests.support.fleet import RunningController
from tests.support.netns import missing_requirements, run
from tests.test_agent_cli import enrolled

MSSP_AGENT = str(Path(sys.executable).parent / "mssp-agent")


def test_token_and_token_file_are_exclusive_and_one_is_required(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("x")
    base = ["enroll", "--controller", "192.0.2.1:7443", "--state-dir", str(tmp_path / "s")]
    for extra in (["--token", "x", "--token-file", str(token_file)], []):
        with pytest.raises(SystemExit) as exc:
            cli.build_parser().parse_args([*base, *extra])
        assert exc.value.code == 2


@pytest.mark.parametrize("content", [None, "", "  \n\t\n"])
def test_unreadable_or_empty_token_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   content: str | None) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    code = cli.main(["enroll", "--controller", "192.0.2.1:7443", "--token-file", str(token_file),
                     "--state-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert ("is empty" if content is not None else "cannot read --token-file") in err, err
    assert not (tmp_path / "s").exists()


def test_a_directory_as_token_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["enroll", "--controller", "192.0.2.1:7443", "--token-file", str(tmp_path),
                     "--state-dir", str(tmp_path / "s")])
    assert code == 1 and "cannot read --token-file" in capsys.readouterr().err


async def test_token_file_is_consumed_by_a_successful_enrollment_only(
        controller: RunningController, tmp_path: Path) -> None:
    await controller.op.create_tenant("tokfile")
    token = await controller.op.add_gateway("tokfile", "gw1")
    address = controller.app.grpc_address
    bad = tmp_path / "bad.token"
    bad.write_text(token[:-1] + ("0" if token[-1] != "0" else "1") + "\n")  # wrong CA pin
    code = await asyncio.to_thread(cli.main, ["enroll", "--controller", address, "--token-file", str(bad),
                                              "--state-dir", str(tmp_path / "s1")])
    assert code == 1 and bad.exists(), "a failed enrollment keeps the token for the retry"

    good = tmp_path / "enroll.token"
    good.write_text(f"\n  {token}  \n")
    good.chmod(0o600)
    code = await asyncio.to_thread(cli.main, ["enroll", "--controller", address, "--token-file", str(good),
                                              "--state-dir", str(tmp_path / "s2")])
    assert code == 0
    assert not good.exists() and (tmp_path / "s2" / "identity.json").exists()


def test_uninstall_is_refused_while_an_agent_holds_the_state_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = enrolled(tmp_path / "agent")
    with lock_dir(state_dir, holder="agent", name=cli.LOCK_FILE):
        assert cli.main(["uninstall", "--state-dir", str(state_dir)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "already running" in err and "stop the agent" in err


# ---- in a network namespace of its own ---------------------------------------------------------------

needs_netns = pytest.mark.skipif(missing_requirements() is not None, reason=missing_requirements() or "")


@pytest.fixture
def router_ns() -> Iterator[str]:
    """An empty namespace (loopback only); whatever runs in it is killed, then it is deleted."""
    name = f"mssp-t-un-{secrets.token_hex(3)}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        for pid in run("ip", "netns", "pids", name, check=False).split():
            run("kill", "-9", pid, check=False)
        run("ip", "netns", "del", name, check=False)


def in_ns(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=60,
                          check=False)


def add_table(ns: str) -> None:
    run("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "mssp")
    run("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "other")  # not ours: stays


def tables(ns: str) -> str:
    return run("ip", "netns", "exec", ns, "nft", "list", "tables")


@pytest.mark.root
@needs_netns
@pytest.mark.parametrize("with_identity", [True, False])
def test_uninstall_deletes_the_table_in_the_namespace(router_ns: str, tmp_path: Path,
                                                      with_identity: bool) -> None:
    state_dir = enrolled(tmp_path / "agent") if with_identity else tmp_path / "agent"
    state_dir.mkdir(exist_ok=True)
    add_table(router_ns)
    done = in_ns(router_ns, MSSP_AGENT, "uninstall", "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    assert "deleted table inet mssp" in done.stdout
    assert "table inet mssp" not in tables(router_ns) and "table inet other" in tables(router_ns)
    again = in_ns(router_ns, MSSP_AGENT, "uninstall", "--state-dir", str(state_dir))
    assert again.returncode == 0 and "nothing to remove" in again.stdout, again.stderr


@pytest.mark.root
@needs_netns
def test_uninstall_stops_the_agents_dnsmasq(router_ns: str, tmp_path: Path) -> None:
    state_dir = enrolled(tmp_path / "agent")
    (state_dir / "enforcement.json").write_text('{"dns": {"listen": ["127.0.0.1"], "port": 5353}}')
    dns = state_dir / "dns"
    dns.mkdir()
    pid_file = dns / "dnsmasq.pid"
    (dns / "dnsmasq.conf").write_text(f"no-resolv\nno-hosts\nbind-interfaces\nlisten-address=127.0.0.1\n"
                                      f"port=5353\nuser=root\npid-file={pid_file}\n")
    dnsmasq = subprocess.Popen(["ip", "netns", "exec", router_ns, "dnsmasq", "--keep-in-foreground",
                                f"--conf-file={dns / 'dnsmasq.conf'}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = pid_file.read_text().strip()
        add_table(router_ns)
        done = in_ns(router_ns, MSSP_AGENT, "uninstall", "--state-dir", str(state_dir))
        assert done.returncode == 0, done.stderr
        assert f"stopped dnsmasq (pid {pid})" in done.stdout, done.stdout
        assert "deleted table inet mssp" in done.stdout
        assert dnsmasq.wait(timeout=10) is not None
    finally:
        dnsmasq.kill()
        dnsmasq.wait(timeout=10)
