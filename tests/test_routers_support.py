"""The router fleet the provisioning tests stand on (tests/support/routers.py): SSH from the ctl
namespace reaches every router's own sshd with the fleet's client key, each LAN reaches the C2
stand-in through its router, and a rekeyed or stopped sshd behaves as a reinstalled or unreachable
router does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.netns import run
from tests.support.routers import C2, RouterFleet, missing_requirements

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(missing_requirements() is not None, reason=missing_requirements() or ""),
]


def ssh(fleet: RouterFleet, i: int, known_hosts: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", fleet.ctl, *fleet.ssh_argv(i, known_hosts, *command)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_ssh_and_lan_paths_of_every_router(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    with RouterFleet.create(tmp_path, 2) as fleet:
        namespaces = list(fleet.namespaces)
        for i in (1, 2):
            done = ssh(fleet, i, known_hosts, "true")
            assert done.returncode == 0, done.stderr
            where = ssh(fleet, i, known_hosts, "ip", "-4", "-o", "addr", "show", "dev", "wan0")
            assert f"192.0.2.{10 + i}/24" in where.stdout, "the session runs in the router's namespace"
            assert fleet.probe(i, C2)
            assert fleet.prefix(i).is_dir()

        fleet.rekey(1)
        changed = ssh(fleet, 1, known_hosts, "true")
        assert changed.returncode != 0 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr
        fleet.stop_sshd(2)
        down = ssh(fleet, 2, known_hosts, "true")
        assert down.returncode == 255 and "refused" in down.stderr.lower(), down.stderr
        assert fleet.probe(2, C2), "only SSH is down, not the router"
        directory = fleet.directory
    assert not directory.exists()
    listed = run("ip", "netns", "list")
    assert not any(ns in listed for ns in namespaces)
