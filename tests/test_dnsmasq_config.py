"""dnsmasq configuration (pure rendering, validation, injection) and the manager against a real dnsmasq.

The manager tests run dnsmasq on 127.0.0.1 with free high ports (root only: the configuration
names user=root); the upstream is a second dnsmasq answering for *.test names. A reload is a
SIGHUP, handled by dnsmasq a few milliseconds later, so checks after one poll until they hold.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_agent.dns.config import (
    DnsError,
    DnsPlan,
    DnsSettings,
    parse_upstream,
    render_main,
    render_servers,
    render_sink,
)
from gateway_agent.dns.dnsmasq import DnsmasqManager
from tests.support.netns import dns_lookup

NOW = 1_700_000_000_000


def settings(tmp: Path, **kw: object) -> DnsSettings:
    return DnsSettings(directory=tmp / "dns", **kw)  # type: ignore[arg-type]


def test_main_config_lines(tmp_path: Path) -> None:
    s = settings(tmp_path, listen=("192.0.2.1", "2001:db8:1::1"), upstreams=("203.0.113.53",))
    text = render_main(s, {"storage.test": ["cat_cloud_storage", "dom_abc"], "a.example": ["cat_x"]},
                       tmp_path / "dns" / "servers.conf", tmp_path / "dns" / "dnsmasq.pid")
    lines = text.splitlines()
    assert "listen-address=192.0.2.1" in lines and "listen-address=2001:db8:1::1" in lines
    assert "log-queries=extra" in lines
    assert f"log-facility={tmp_path}/dns/queries.log" in lines
    assert f"servers-file={tmp_path}/dns/servers.conf" in lines
    assert "nftset=/a.example/4#inet#mssp#cat_x_v4,6#inet#mssp#cat_x_v6" in lines
    assert ("nftset=/storage.test/4#inet#mssp#cat_cloud_storage_v4,6#inet#mssp#cat_cloud_storage_v6,"
            "4#inet#mssp#dom_abc_v4,6#inet#mssp#dom_abc_v6") in lines
    assert not any(line.startswith(("server=", "address=")) for line in lines)  # those live in servers-file


def test_servers_file_sinkholes(tmp_path: Path) -> None:
    sinkholes = {"c2.evil.test": 0, "old.evil.test": NOW - 1, "soon.evil.test": NOW + 1000}
    nx = render_servers(settings(tmp_path, upstreams=("203.0.113.53", "2001:db8::53#5353")), sinkholes, NOW)
    assert nx.splitlines()[1:] == ["server=203.0.113.53", "server=2001:db8::53#5353",
                                   "server=/c2.evil.test/", "server=/soon.evil.test/"]
    null = render_servers(settings(tmp_path, sinkhole="null", sink_port=5400), {"c2.evil.test": 0}, NOW)
    assert null.splitlines()[1:] == ["server=/c2.evil.test/127.0.0.1#5400"]
    sink = render_sink(settings(tmp_path, sink_port=5400), tmp_path / "sink.pid")
    assert "address=/#/#" in sink.splitlines() and "port=5400" in sink.splitlines()


@pytest.mark.parametrize("bad", [
    "evil.test\nserver=8.8.8.8", "evil.test/8.8.8.8", "evil.test#5353", "*.evil.test", "#", "",
    "evil test", 'evil".test', "a" * 254, "evil.test/", "EVIL.TEST",
])
def test_hostile_domains_are_refused(tmp_path: Path, bad: str) -> None:
    s = settings(tmp_path)
    with pytest.raises(DnsError):
        render_servers(s, {bad: 0}, NOW)
    with pytest.raises(DnsError):
        render_main(s, {bad: ["cat_x"]}, tmp_path / "s", tmp_path / "p")


@pytest.mark.parametrize("base", ["cat_x,6#inet#filter#input", "cat x", "cat_x\nserver=1.1.1.1", "", "Cat"])
def test_hostile_set_names_are_refused(tmp_path: Path, base: str) -> None:
    with pytest.raises(DnsError):
        render_main(settings(tmp_path), {"ok.example": [base]}, tmp_path / "s", tmp_path / "p")


@pytest.mark.parametrize("kw", [
    {"listen": ("192.0.2.1\nserver=8.8.8.8",)},
    {"listen": ()},
    {"upstreams": ("8.8.8.8; rm",)},
    {"upstreams": ("8.8.8.8#99999",)},
    {"upstreams": ("dns.example",)},
    {"sinkhole": "refuse"},
    {"user": "root\nuser=x"},
    {"port": 0},
    {"query_log": Path("/tmp/q log")},
])
def test_settings_are_validated(tmp_path: Path, kw: dict[str, object]) -> None:
    with pytest.raises(DnsError):
        settings(tmp_path, **kw)


def test_unsafe_directory_is_refused() -> None:
    with pytest.raises(DnsError):
        DnsSettings(directory=Path("/tmp/a\nb"))


def test_upstream_forms() -> None:
    assert parse_upstream("203.0.113.53") == "203.0.113.53"
    assert parse_upstream("2001:DB8::53#5353") == "2001:db8::53#5353"


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="dnsmasq not installed (bash .ci/sysdeps.sh)")
def test_dnsmasq_accepts_the_generated_configuration(tmp_path: Path) -> None:
    manager = DnsmasqManager(settings(tmp_path, upstreams=("203.0.113.53",), sinkhole="null"))
    prepared = manager.prepare(DnsPlan({"c2.evil.test": 0}, {"storage.test": ["cat_cloud_storage"]}))
    assert "nftset=/storage.test/" in prepared.main
    assert "server=/c2.evil.test/127.0.0.1#5399" in prepared.servers
    assert not manager.conf_path.exists()  # prepare never touches the live configuration


# ---- a real dnsmasq on loopback ------------------------------------------------------------------

needs_root_dnsmasq = pytest.mark.skipif(
    shutil.which("dnsmasq") is None or os.geteuid() != 0,
    reason="needs root and dnsmasq (bash .ci/sysdeps.sh)",
)


def free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no free port")


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[int]:
    """An authoritative dnsmasq for *.test on 127.0.0.1:<port>."""
    port = free_port()
    conf = tmp_path / "upstream.conf"
    conf.write_text("\n".join([
        "no-resolv", "no-hosts", "bind-interfaces", "listen-address=127.0.0.1", f"port={port}", "user=root",
        f"pid-file={tmp_path / 'upstream.pid'}", "address=/c2.evil.test/203.0.113.66",
        "address=/files.storage.test/198.51.100.30", "address=/www.ok.test/198.51.100.80",
        "address=/later.evil.test/203.0.113.67",
    ]) + "\n")
    proc = subprocess.Popen(["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: dns_lookup("127.0.0.1", "www.ok.test", port=port, timeout=0.3)[0] == 0)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=5)


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest.fixture
def manager_factory(tmp_path: Path, upstream: int) -> Iterator[object]:
    managers: list[DnsmasqManager] = []

    def make(**kw: object) -> tuple[DnsmasqManager, int]:
        port = free_port()
        s = DnsSettings(directory=tmp_path / "dns", listen=("127.0.0.1",), port=port,
                        upstreams=(f"127.0.0.1#{upstream}",), sink_port=free_port(), **kw)  # type: ignore[arg-type]
        m = DnsmasqManager(s)
        managers.append(m)
        return m, port

    try:
        yield make
    finally:
        for m in managers:
            m.stop()


@needs_root_dnsmasq
def test_sinkholes_reload_without_restart(manager_factory: object) -> None:
    manager, port = manager_factory()  # type: ignore[operator]

    def ask(name: str) -> tuple[int | None, list[str]]:
        return dns_lookup("127.0.0.1", name, port=port)

    manager.apply(DnsPlan({"c2.evil.test": 0}, {}))
    pid = manager.pid
    assert pid is not None
    assert ask("c2.evil.test") == (3, [])  # NXDOMAIN
    assert ask("sub.c2.evil.test") == (3, [])  # subdomains too
    assert ask("www.ok.test") == (0, ["198.51.100.80"])

    manager.update_sinkholes({"later.evil.test": 0, "c2.evil.test": None})
    # SIGHUP is asynchronous: dnsmasq re-reads the servers-file within milliseconds
    wait_for(lambda: ask("later.evil.test") == (3, []))
    wait_for(lambda: ask("c2.evil.test") == (0, ["203.0.113.66"]))
    assert manager.pid == pid and manager.restarts == 0  # SIGHUP only

    log_text = manager.settings.log_path.read_text()
    assert "query[A] c2.evil.test from 127.0.0.1" in log_text  # the query log is kept for telemetry


@needs_root_dnsmasq
def test_domain_ioc_expires_without_agent_action(manager_factory: object) -> None:
    manager, port = manager_factory()  # type: ignore[operator]
    expires = time.time_ns() // 1_000_000 + 1500
    manager.apply(DnsPlan({"c2.evil.test": expires}, {}))
    assert dns_lookup("127.0.0.1", "c2.evil.test", port=port) == (3, [])
    wait_for(lambda: dns_lookup("127.0.0.1", "c2.evil.test", port=port) == (0, ["203.0.113.66"]))


@needs_root_dnsmasq
def test_nftset_change_restarts_and_bad_config_keeps_the_old_one(manager_factory: object) -> None:
    manager, port = manager_factory()  # type: ignore[operator]
    manager.apply(DnsPlan({}, {"storage.test": ["cat_cloud_storage"]}))
    first = manager.pid
    manager.apply(DnsPlan({}, {"storage.test": ["cat_cloud_storage"], "other.test": ["cat_x"]}))
    assert manager.pid != first and manager.restarts == 1
    assert "nftset=/other.test/" in manager.conf_path.read_text()
    second = manager.pid
    before = manager.conf_path.read_text()
    manager.settings = DnsSettings(**{**manager.settings.__dict__, "binary": "/bin/false"})
    with pytest.raises(DnsError):
        manager.prepare(DnsPlan({}, {"third.test": ["cat_y"]}))
    assert manager.conf_path.read_text() == before and manager.pid == second
    assert dns_lookup("127.0.0.1", "www.ok.test", port=port) == (0, ["198.51.100.80"])


@needs_root_dnsmasq
def test_null_sinkhole_answers_zero(manager_factory: object) -> None:
    manager, port = manager_factory(sinkhole="null")  # type: ignore[operator]
    manager.apply(DnsPlan({"c2.evil.test": 0}, {}))
    assert dns_lookup("127.0.0.1", "x.c2.evil.test", port=port) == (0, ["0.0.0.0"])
    assert dns_lookup("127.0.0.1", "c2.evil.test", "AAAA", port=port) == (0, ["::"])
    assert dns_lookup("127.0.0.1", "www.ok.test", port=port) == (0, ["198.51.100.80"])


@needs_root_dnsmasq
def test_a_new_manager_adopts_the_running_dnsmasq(manager_factory: object, tmp_path: Path) -> None:
    manager, port = manager_factory()  # type: ignore[operator]
    manager.apply(DnsPlan({"c2.evil.test": 0}, {}))
    pid = manager.pid
    manager.close()  # the agent goes away; dnsmasq stays (fail-static)
    again = DnsmasqManager(manager.settings)
    try:
        again.apply(DnsPlan({"c2.evil.test": 0, "later.evil.test": 0}, {}))
        assert again.pid == pid  # adopted, reloaded, not a second instance
        wait_for(lambda: dns_lookup("127.0.0.1", "later.evil.test", port=port) == (3, []))
    finally:
        again.stop()
    assert not Path(f"/proc/{pid}").exists() or b"dnsmasq" not in Path(f"/proc/{pid}/cmdline").read_bytes()
