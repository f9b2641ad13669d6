"""What a provisioning run is given, judged before anything runs: hosts.csv, jump hosts, prefixes,
host keys, the bundle manifest, and how ansible-runner events fold into a result per host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.domain.errors import InvalidInput
from controller.provisioning import hostkeys
from controller.provisioning.bundle import BundleError, check_platforms, check_python, load
from controller.provisioning.runner import EventFold, HostOutcome
from controller.provisioning.targets import Target, check_prefix, parse_hosts_csv, parse_jump

GOOD = "name,host,port,user\n# routers of acme\nr1,192.0.2.11,22,root\n\nr2,2001:db8::12,2222,admin\n"


def test_hosts_csv_rows_and_defaults() -> None:
    found = parse_hosts_csv("\ufeff" + GOOD)
    assert found == [Target("r1", "192.0.2.11", 22, "root"), Target("r2", "2001:db8::12", 2222, "admin")]
    assert found[1].endpoint == "[2001:db8::12]:2222" and found[0].endpoint == "192.0.2.11"
    assert parse_hosts_csv("host,name\nrouter.example.net,r3\n")[0].host == "router.example.net"


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    ("name,host\n", "no routers"),
    ("name,port\nr1,22\n", "line 1: the header has no 'host' column"),
    ("name,host,colour\nr1,192.0.2.1,red\n", "line 1: unknown column 'colour'"),
    ("name,host\nr1,192.0.2.1\nr1,192.0.2.2\n", "line 3: gateway name 'r1' is already on line 2"),
    ("name,host\nr1,192.0.2.1\nr2,192.0.2.1\n", "line 3: 192.0.2.1:22 is already on line 2"),
    ("name,host\nr1,300.1.1.1\n", "line 2: host '300.1.1.1' is not an IP address or a host name"),
    ("name,host,port\nr1,192.0.2.1,70000\n", "line 2: port 70000 is outside 1-65535"),
    ("name,host,port\nr1,192.0.2.1,ssh\n", "line 2: port 'ssh' is not a number"),
    ("name,host\nR1,192.0.2.1\n", "line 2:"),
    ("name,host\nr1\n", "line 2: 1 fields, the header has 2"),
    ("name,host,user\nr1,192.0.2.1,ro ot\n", "line 2: user 'ro ot'"),
    ("name,host,prefix\nr1,192.0.2.1,/opt/../etc\n", "line 2: prefix"),
])
def test_a_bad_hosts_csv_names_its_line(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_hosts_csv(text)


def test_jump_hosts_and_prefixes() -> None:
    assert parse_jump("") is None
    jump = parse_jump("ops@[2001:db8::1]:2200")
    assert jump is not None and (jump.user, jump.host, jump.port) == ("ops", "2001:db8::1", 2200)
    jump = parse_jump("ops@bastion.example.net")
    assert jump is not None and (jump.host, jump.port) == ("bastion.example.net", 22)
    for bad in ("bastion", "@bastion", "ops@bastion:0"):
        with pytest.raises(InvalidInput):
            parse_jump(bad)
    assert check_prefix("/srv/mssp/") == "/srv/mssp"
    for bad in ("relative", "/", "/etc", "/opt", "/srv/a/../b", "/srv/a b"):
        with pytest.raises(InvalidInput):
            check_prefix(bad)


KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIHd4Ytc4bhNvXB2U6V3QLiTR9fGdjLzF9P6Wa5U2VdT+"


def test_known_hosts_new_keys_and_fingerprints(tmp_path: Path) -> None:
    pinned = hostkeys.HostKey("192.0.2.11", "ssh-ed25519", KEY)
    path = tmp_path / "known_hosts"
    hostkeys.write_known_hosts(path, [pinned])
    with path.open("a") as f:  # what ssh appends with accept-new, plus lines it must not trust
        f.write(f"[192.0.2.12]:2222 ssh-ed25519 {KEY}\n|1|hashed= ssh-ed25519 {KEY}\n# comment\nbroken\n")
    fresh = hostkeys.newly_seen(path, {pinned.endpoint: pinned})
    assert list(fresh) == ["[192.0.2.12]:2222"]
    assert pinned.fingerprint.startswith("SHA256:") and "=" not in pinned.fingerprint
    assert len(pinned.fingerprint) == len("SHA256:") + 43
    assert hostkeys.parse_public_key("x", f"ssh-ed25519 {KEY} comment").key_b64 == KEY
    assert hostkeys.is_key_change("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@")
    assert not hostkeys.is_key_change("Connection refused")


def test_bundle_checks(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not an agent bundle"):
        load(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({"package": "mssp-gateway", "version": "1.0",
                                                       "python": "3.11", "files": ["a.whl"]}))
    with pytest.raises(BundleError, match=r"incomplete: a\.whl is missing"):
        load(tmp_path)
    (tmp_path / "a.whl").write_bytes(b"")
    assert load(tmp_path).version == "1.0"
    with pytest.raises(BundleError, match="unknown platform 'sparc'"):
        check_platforms(["sparc"])
    assert check_platforms([]) == ("manylinux_x86_64",)
    for bad in ("2.7", "3.9", "311", "3.11.2"):
        with pytest.raises(BundleError):
            check_python(bad)


def _event(kind: str, host: str, task: str = "t", **res: object) -> dict[str, object]:
    return {"event": kind, "event_data": {"host": host, "task": task, "task_path": "/r/tasks/install.yml:3",
                                          "res": res}}


def test_events_fold_into_one_result_per_host() -> None:
    seen: list[HostOutcome] = []
    fold = EventFold({"r1": "192.0.2.11", "r2": "192.0.2.12", "r3": "192.0.2.13"}, seen.append)
    fold(_event("runner_on_start", "r1", "copy the bundle"))
    fold(_event("runner_on_ok", "r1", "copy the bundle", changed=True))
    fold(_event("runner_on_start", "r2", "Gathering Facts"))
    fold(_event("runner_on_unreachable", "r2", "Gathering Facts",
                msg="Failed to connect to the host via ssh"))
    fold({"event": "playbook_on_stats", "event_data": {"processed": {"r1": 1, "r2": 1}, "changed": {"r1": 1},
                                                        "dark": {"r2": 1}, "failures": {}}})
    fold(_event("runner_on_ok", "nobody", "x"))  # a host outside the inventory (localhost) is ignored
    results = {o.gateway: o for o in fold.finish(0, "failed")}
    assert (results["r1"].state, results["r1"].ok, results["r1"].changed) == ("changed", 1, 1)
    assert "install" in results["r1"].phases
    assert results["r2"].state == "unreachable" and "via ssh" in results["r2"].message
    assert results["r2"].task == "Gathering Facts"
    assert results["r3"].state == "skipped" and "stopped before this host" in results["r3"].message
    assert {o.gateway for o in seen} == {"r1", "r2", "r3"}


def test_a_run_that_dies_before_its_stats_fails_every_unfinished_host() -> None:
    fold = EventFold({"r1": "192.0.2.11"}, lambda _: None)
    fold(_event("runner_on_start", "r1", "install"))
    fold(_event("runner_on_failed", "r1", "install", msg="pip failed", stderr="no space left"))
    (only,) = fold.finish(2, "failed")
    assert only.state == "failed" and only.message == "pip failed | no space left" and only.task == "install"
    fold = EventFold({"r1": "192.0.2.11"}, lambda _: None)
    fold(_event("runner_on_start", "r1", "install"))
    (only,) = fold.finish(-9, "canceled")
    assert only.state == "failed" and "canceled" in only.message
