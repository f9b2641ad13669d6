"""Key custody (issue 9, item 6) through the real thing: a real controller with real agents enrolled
and on push; `msspctl backup` while it runs; the controller stopped and its whole data dir deleted;
`msspctl restore` into a fresh dir at the same path; the controller started again. The same agents,
with the certificates and NATS credentials enrollment gave them, are back on push: nobody
re-enrolled. Plus the CLI's own refusals (passphrase, lock, damage) and its prompt.

Agents heartbeat every 5 minutes: only NATS can bring them a push within the waits below.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from controller.simulation import SimulatedAgent, enroll_agent, wait_until
from gateway_agent import brokers
from gateway_agent.identity import AgentIdentity
from mssp.common.dirlock import lock_dir
from mssp.v1 import gateway_pb2
from tests.support.cli import in_process_cli
from tests.support.controller_proc import MSSPCTL, clean_env, run_msspctl
from tests.support.fleet import controller_settings, start_controller

PASS = "key custody passphrase"
WITHIN = 30.0


async def _msspctl(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_msspctl, *args, env=clean_env(MSSP_BACKUP_PASSPHRASE=PASS))


async def test_a_fleet_comes_back_from_a_backup_with_no_re_enrollment(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path)
    data_dir, archive = settings.data_dir, tmp_path / "controller.bak"
    ctl = await start_controller(settings, tmp_path)
    running = True
    sims: list[SimulatedAgent] = []
    try:
        await ctl.op.create_tenant("acme")
        for i in range(2):
            sims.append(await enroll_agent(ctl.op, "acme", f"gw{i}", tmp_path / "agents" / f"gw{i}",
                                           heartbeat_interval=300.0))
        await wait_until(lambda: all(s.agent.synced.is_set() and s.agent.nats_connected for s in sims),
                         within=WITHIN)
        await ctl.op.add_ioc("192.0.2.10")
        await wait_until(lambda: all("192.0.2.10" in s.ioc_values() for s in sims), within=WITHIN)
        where = (ctl.app.grpc_address, ctl.app.gateway_address, list(ctl.app.nats_urls))
        ca = (data_dir / "pki" / "ca.crt").read_bytes()
        certs = [AgentIdentity.load(s.state_dir).cert_path.read_bytes() for s in sims]
        ids = sorted(g.id for g in (await ctl.op.fleet("acme")).gateways)

        made = await _msspctl("backup", "--out", str(archive), "--data-dir", str(data_dir), "-o", "json")
        assert made.returncode == 0, made.stderr
        summary = json.loads(made.stdout)
        assert {t["name"]: t["rows"] for t in summary["tables"]}["gateway"] == 2
        assert "pki/ca.key" in {f["path"] for f in summary["files"]}

        await ctl.op.close()
        await ctl.app.stop()
        running = False
        await wait_until(lambda: not any(s.agent.nats_connected for s in sims), within=WITHIN)
        shutil.rmtree(data_dir)  # the host is lost

        back = await _msspctl("restore", str(archive), "--data-dir", str(data_dir))
        assert back.returncode == 0, back.stderr
        assert "restored" in back.stdout
        again = await start_controller(settings, tmp_path)
        ctl.app, ctl.op, running = again.app, again.op, True

        assert (ctl.app.grpc_address, ctl.app.gateway_address, ctl.app.nats_urls) == where
        assert (data_dir / "pki" / "ca.crt").read_bytes() == ca
        # Their NATS credentials (minted at enrollment by the account key) are accepted again...
        await wait_until(lambda: all(s.agent.nats_connected for s in sims), within=WITHIN)
        # ...a push signed with the restored signing key verifies and applies...
        await ctl.op.add_ioc("192.0.2.11")
        await wait_until(lambda: all("192.0.2.11" in s.ioc_values() for s in sims), within=WITHIN)
        # ...and the certificates they hold open the gateway API (mTLS against the restored CA).
        for sim, cert in zip(sims, certs, strict=True):
            identity = AgentIdentity.load(sim.state_dir)
            assert identity.cert_path.read_bytes() == cert  # the same certificate: no re-enrollment
            channel, stub = await brokers.open_channel(identity)
            try:
                reply = await stub.GetBrokers(gateway_pb2.GetBrokersRequest(), timeout=10)
            finally:
                await channel.close()
            assert list(reply.nats_urls) == where[2]
        assert sorted(g.id for g in (await ctl.op.fleet("acme")).gateways) == ids
    finally:
        for sim in sims:
            await sim.stop()
        if running:
            await ctl.op.close()
            await ctl.app.stop()


def _controller_dir(root: Path) -> Path:
    """A data dir with the files a started controller leaves, and an empty migrated database."""
    from controller.store.db import Database

    data_dir = root / "data"
    (data_dir / "pki").mkdir(parents=True)
    (data_dir / "pki" / "ca.key").write_bytes(b"KEY")
    (data_dir / "operator.token").write_text("mssp_op_t\n")
    db = Database(f"sqlite:///{data_dir / 'controller.db'}")
    db.upgrade()
    db.dispose()
    return data_dir


def test_cli_backup_and_restore_refuse_what_they_must(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    invoke = in_process_cli(monkeypatch, capsys)
    data_dir = _controller_dir(tmp_path)
    archive = tmp_path / "a.bak"
    code, _out, err = invoke("backup", "--out", str(archive), "--data-dir", str(data_dir),
                             env={"MSSP_BACKUP_PASSPHRASE": "too short"})
    assert code == 1 and "at least 12 characters" in err and not archive.exists()

    secret = tmp_path / "pass.txt"
    secret.write_text(PASS + "\n")
    code, out, err = invoke("backup", "--out", str(archive), "--data-dir", str(data_dir),
                            "--passphrase-file", str(secret), "-o", "json")
    assert code == 0, err
    summary = json.loads(out)
    assert isinstance(summary["rows"], int) and isinstance(summary["created_at_ms"], int)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600

    target = tmp_path / "restored"
    target.mkdir()
    with lock_dir(target, holder="controller", name="controller.lock"):
        code, _out, err = invoke("restore", str(archive), "--data-dir", str(target),
                                 "--passphrase-file", str(secret))
    assert code == 1 and f"pid {os.getpid()}" in err and "stop" in err
    assert sorted(os.listdir(target)) == ["controller.lock"]

    code, _out, err = invoke("restore", str(archive), "--data-dir", str(target),
                             env={"MSSP_BACKUP_PASSPHRASE": "the wrong passphrase"})
    assert code == 1 and "error: wrong passphrase or damaged archive" in err
    assert sorted(os.listdir(target)) == ["controller.lock"]

    code, out, err = invoke("restore", str(archive), "--data-dir", str(target),
                            env={"MSSP_BACKUP_PASSPHRASE": PASS})
    assert code == 0, err
    assert (target / "pki" / "ca.key").read_bytes() == b"KEY"
    assert stat.S_IMODE((target / "pki" / "ca.key").stat().st_mode) == 0o600

    code, _out, err = invoke("restore", str(archive), "--data-dir", str(target),
                             env={"MSSP_BACKUP_PASSPHRASE": PASS})
    assert code == 1 and "already holds a controller's keys" in err


def test_the_passphrase_prompt_hides_and_confirms(tmp_path: Path) -> None:
    data_dir = _controller_dir(tmp_path)
    archive = tmp_path / "a.bak"
    run = {"env": clean_env(), "capture_output": True, "text": True, "timeout": 60,
           "start_new_session": True, "check": False}  # no terminal: the prompt reads stdin
    mismatch = subprocess.run([MSSPCTL, "backup", "--out", str(archive), "--data-dir", str(data_dir)],
                              input=f"{PASS}\nsomething else entirely\n", **run)  # type: ignore[call-overload]
    assert mismatch.returncode != 0 and not archive.exists()
    done = subprocess.run([MSSPCTL, "backup", "--out", str(archive), "--data-dir", str(data_dir)],
                          input=f"{PASS}\n{PASS}\n", **run)  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    assert PASS not in done.stdout + done.stderr
    restored = subprocess.run([MSSPCTL, "restore", str(archive), "--data-dir", str(tmp_path / "r")],
                              input=f"{PASS}\n", **run)  # type: ignore[call-overload]
    assert restored.returncode == 0, restored.stderr
