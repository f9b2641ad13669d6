"""Provisioning for real (root): three namespace routers with their own sshd, provisioned in one bulk
run by the controller (which runs, with Ansible, in its own namespace), each enforcing with nft; a
second run changes nothing; failures stay with their host; an upgrade goes one router at a time;
decommissioning leaves nothing behind and the gateway's certificate and credentials are refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.netns import run
from tests.support.provisioning import REVOKED_PROBE, Site, build_bundle, by_host, until
from tests.support.routers import C2, RouterFleet, missing_requirements

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(missing_requirements() is not None, reason=missing_requirements() or ""),
]
ROUTERS = 3


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("provisioning")
    bundle = build_bundle(root / "bundle")
    with RouterFleet.create(root, ROUTERS) as fleet, Site.start(root, fleet, bundle) as s:
        assert s.ctl("tenant", "create", "acme").returncode == 0
        yield s


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def test_bulk_provision_enforces_and_a_second_run_changes_nothing(site: Site) -> None:
    code, summary = site.provision()
    hosts = by_host(summary)
    assert code == 0, f"{summary}\n{site.log_tail()}"
    assert set(hosts) == {"r1", "r2", "r3"} and all(h["state"] == "changed" for h in hosts.values())
    gateways = site.gateways()
    assert all(g["status"] == "enrolled" and g["converged"] for g in gateways.values()), gateways
    fleet = site.fleet
    for i in fleet.routers:
        state = fleet.prefix(i) / "state"
        assert (state / "identity.json").exists() and not (state / "enroll.token").exists()
        assert oct((state).stat().st_mode & 0o777) == "0o700"
        assert fleet.probe(i, C2)

    assert site.ctl("ioc", "add", C2).returncode == 0  # pushed over NATS to the nft backends
    for i in fleet.routers:
        until(lambda i=i: not fleet.probe(i, C2), f"router r{i} blocks {C2}")

    code, again = site.provision()
    assert code == 0, again
    assert all(h["state"] == "ok" and h["changed"] == 0 for h in by_host(again).values()), again

    runs_dir = site.data_dir / "provisioning" / "runs"
    artifacts = [p for p in runs_dir.rglob("*") if p.is_file()]
    assert artifacts and not any(b"mssp_enr_" in p.read_bytes() for p in artifacts)  # no token anywhere
    assert b"mssp_enr_" not in site.log.read_bytes()
    assert not (site.data_dir / "provisioning" / "secrets").exists() or not any(
        (site.data_dir / "provisioning" / "secrets").iterdir())


def test_each_failure_stays_with_its_host(site: Site, tmp_path: Path) -> None:
    fleet = site.fleet
    fleet.stop_sshd(1)  # r1 unreachable
    fleet.rekey(2)  # r2 shows another host key than the one pinned at first contact
    try:
        code, summary = site.provision()
        hosts = by_host(summary)
        assert code == 1 and summary["status"] == "failed"
        assert hosts["r3"]["state"] == "ok", hosts
        assert hosts["r1"]["state"] == "unreachable" and hosts["r1"]["task"] and hosts["r1"]["message"]
        assert hosts["r2"]["state"] == "unreachable"
        assert "host key of 192.0.2.12 changed" in hosts["r2"]["message"]
        assert "SHA256:" in hosts["r2"]["message"] and "forget-host-key acme/r2" in hosts["r2"]["message"]
    finally:
        fleet.start_sshd(1)

    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    code, summary = site.provision(key=wrong)
    assert code == 1 and by_host(summary)["r1"]["state"] == "unreachable"
    assert "permission denied" in str(by_host(summary)["r1"]["message"]).lower()

    assert site.ctl("gateway", "forget-host-key", "acme/r2").returncode == 0
    code, summary = site.provision()  # r2's new key is trusted on this new first contact, and pinned
    assert code == 0 and all(h["state"] == "ok" for h in by_host(summary).values()), summary


def test_a_router_behind_a_bastion_is_reached_through_it(site: Site) -> None:
    fleet = site.fleet
    r2 = fleet.routers[2]
    # The controller's namespace may no longer reach r2's sshd itself: only r1 (the bastion) can.
    rules = f"table inet jumptest {{ chain out {{ type filter hook output priority 0; ip daddr {r2.wan} " \
            "tcp dport 22 reject with tcp reset; }; }"
    fleet.exec(fleet.ctl, "nft", "-f", "-", input=rules)
    one = ("gateway", "provision", "acme/r2", "--host", r2.wan, "--prefix", str(fleet.prefix(2)), "--key",
           str(fleet.client_key), "--bundle", str(site.bundle), "--service", "supervisor", "--router-options",
           str(site.router_options), "-o", "json")
    try:
        direct = site.ctl(*one)
        assert direct.returncode == 1 and by_host(json.loads(direct.stdout))["r2"]["state"] == "unreachable"
        jumped = site.ctl(*one, "--jump", f"root@{fleet.routers[1].wan}")
        assert jumped.returncode == 0, jumped.stdout + jumped.stderr
        assert by_host(json.loads(jumped.stdout))["r2"]["state"] == "ok"
    finally:
        fleet.exec(fleet.ctl, "nft", "delete", "table", "inet", "jumptest", check=False)


def test_upgrade_goes_one_router_at_a_time(site: Site, tmp_path: Path) -> None:
    newer = build_bundle(tmp_path / "bundle-0.1.1", "0.1.1", tmp_path)
    done = site.ctl("gateway", "upgrade", "--tenant", "acme", "--batch", "1", "--key",
                    str(site.fleet.client_key), "--bundle", str(newer), "--service", "supervisor",
                    "--wait", "120", "-o", "json")
    summary = json.loads(done.stdout) if done.stdout else {"hosts": []}
    states = {h["gateway"]: (h["state"], h["task"], h["message"]) for h in summary["hosts"]}
    assert done.returncode == 0, f"{states}\n{done.stderr}"
    assert all(h["state"] == "changed" for h in by_host(summary).values())
    assert {g["agent_version"] for g in site.gateways().values()} == {"0.1.1"}
    run_dir = site.data_dir / "provisioning" / "runs" / summary["id"]
    events = run_dir / "artifacts" / summary["id"] / "job_events"
    plays = [json.loads(p.read_text()) for p in events.glob("*.json")]
    batches = [e for e in plays if e.get("event") == "playbook_on_play_start"]
    assert len(batches) == ROUTERS  # serial: 1, one play per router


def test_decommission_leaves_nothing_and_the_gateway_is_refused(site: Site, tmp_path: Path) -> None:
    fleet = site.fleet
    kept = tmp_path / "r3-state"  # what a thief of the router's disk would hold
    shutil.copytree(fleet.prefix(3) / "state", kept)
    done = site.ctl("gateway", "decommission", "acme/r3", "--key", str(fleet.client_key), "--service",
                    "supervisor", "-o", "json")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert not fleet.prefix(3).exists()
    listed = fleet.exec(fleet.routers[3].ns, "nft", "list", "tables")
    assert "mssp" not in listed
    left = [_cmdline(pid) for pid in run("ip", "netns", "pids", fleet.routers[3].ns).split()]
    assert [c for c in left if "mssp-agent" in c or "dnsmasq" in c] == []  # only its sshd is left
    assert fleet.probe(3, C2)  # the router no longer blocks anything: it is ours no more
    assert site.gateways()["r3"]["status"] == "revoked"
    probe = fleet.exec(fleet.ctl, sys.executable, "-c", REVOKED_PROBE, str(kept))
    result = json.loads(probe)
    assert result["grpc"] in ("UNAUTHENTICATED", "PERMISSION_DENIED"), result
    assert result["nats"].startswith("refused"), result
    assert not fleet.probe(1, C2)  # the other routers still enforce
