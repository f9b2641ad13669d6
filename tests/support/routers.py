"""A fleet of routers in network namespaces, each with its own sshd, for the provisioning tests.

    with RouterFleet.create(tmp_path, 3) as fleet:
        fleet.spawn(fleet.ctl, ["msspctl", "server", "run", ...])   # the controller, inside ctl
        fleet.probe(1, C2)                                           # LAN 1 -> router 1 -> C2:80

Addresses come only from the documentation ranges:

    ctl       br0 192.0.2.1/24, lo 203.0.113.66 (TCP 80 "ok": the C2 stand-in)   mssp-t-ctl-<suffix>
    router i  wan0 192.0.2.(10+i)/24 on br0, lan0 198.51.100.(8i+1)/29, sshd on wan0:22
                                                                                   mssp-t-r<i>-<suffix>
    LAN i     eth0 198.51.100.(8i+2)/29, default via router i                    mssp-t-l<i>-<suffix>

Ansible and the controller run inside ctl, so SSH really crosses a network; the routers share this
machine's filesystem, so each gets its own install prefix (prefix(i)). sshd logs in as root with a
per-fleet client key and a per-router host key. Every namespace, process and file made here is
removed when the context exits, also when the test failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.netns import _PROBE, _SERVER, run
from tests.support.netns import missing_requirements as netns_missing

C2 = "203.0.113.66"
CTL = "192.0.2.1"
SSHD = "/usr/sbin/sshd"
MAX_ROUTERS = 31  # 198.51.100.0/24 holds that many /29 LANs after the first


def missing_requirements() -> str | None:
    """Why the router-fleet tests cannot run here, or None."""
    missing = netns_missing()
    if missing:
        return missing
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} not found (openssh-server; run `bash .ci/sysdeps.sh`)"
    tools = [t for t in ("ssh", "ssh-keygen") if shutil.which(t) is None]
    return f"missing tools: {', '.join(tools)}" if tools else None


@dataclass
class Router:
    index: int
    ns: str
    lan_ns: str
    directory: Path  # sshd's files
    sshd: subprocess.Popen[bytes] | None = None

    @property
    def wan(self) -> str:
        return f"192.0.2.{10 + self.index}"

    @property
    def lan_gateway(self) -> str:
        return f"198.51.100.{8 * self.index + 1}"

    @property
    def lan_host(self) -> str:
        return f"198.51.100.{8 * self.index + 2}"

    @property
    def lan_net(self) -> str:
        return f"198.51.100.{8 * self.index}/29"

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"


@dataclass
class RouterFleet:
    suffix: str
    directory: Path
    ctl: str = ""
    routers: dict[int, Router] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def create(cls, parent: Path, count: int) -> Iterator[RouterFleet]:
        if not 1 <= count <= MAX_ROUTERS:
            raise ValueError(f"1 to {MAX_ROUTERS} routers, not {count}")
        suffix = secrets.token_hex(3)
        directory = parent / f"routers-{suffix}"
        directory.mkdir(parents=True)
        fleet = cls(suffix=suffix, directory=directory)
        try:
            fleet._build(count)
            yield fleet
        finally:
            fleet.destroy()

    def _ns(self, role: str) -> str:
        name = f"mssp-t-{role}-{self.suffix}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.exec(name, "ip", "link", "set", "lo", "up")
        return name

    def _build(self, count: int) -> None:
        self.ctl = ctl = self._ns("ctl")
        self.exec(ctl, "ip", "link", "add", "br0", "type", "bridge")
        self.exec(ctl, "ip", "addr", "add", f"{CTL}/24", "dev", "br0")
        self.exec(ctl, "ip", "link", "set", "br0", "up")
        self.exec(ctl, "ip", "addr", "add", f"{C2}/32", "dev", "lo")
        self.spawn(ctl, [sys.executable, "-c", _SERVER], ready="ready")
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"mssp-test-{self.suffix}",
            "-f", str(self.client_key))
        shutil.copyfile(f"{self.client_key}.pub", self.directory / "authorized_keys")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        for i in range(1, count + 1):
            self._add_router(i)
        for router in self.routers.values():
            self._wait_reachable(router)

    def _add_router(self, i: int) -> None:
        r = Router(i, self._ns(f"r{i}"), self._ns(f"l{i}"), self.directory / f"r{i}")
        r.directory.mkdir()
        self.prefix(i).mkdir()
        peer = f"r{i}"
        run("ip", "link", "add", "wan0", "netns", r.ns, "type", "veth", "peer", "name", peer,
            "netns", self.ctl)
        self.exec(self.ctl, "ip", "link", "set", peer, "master", "br0")
        self.exec(self.ctl, "ip", "link", "set", peer, "up")
        run("ip", "link", "add", "eth0", "netns", r.lan_ns, "type", "veth", "peer", "name", "lan0",
            "netns", r.ns)
        self.exec(r.ns, "ip", "addr", "add", f"{r.wan}/24", "dev", "wan0")
        self.exec(r.ns, "ip", "link", "set", "wan0", "up")
        self.exec(r.ns, "ip", "addr", "add", f"{r.lan_gateway}/29", "dev", "lan0")
        self.exec(r.ns, "ip", "link", "set", "lan0", "up")
        self.exec(r.ns, "ip", "route", "add", "default", "via", CTL)
        self.exec(r.ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        self.exec(r.lan_ns, "ip", "addr", "add", f"{r.lan_host}/29", "dev", "eth0")
        self.exec(r.lan_ns, "ip", "link", "set", "eth0", "up")
        self.exec(r.lan_ns, "ip", "route", "add", "default", "via", r.lan_gateway)
        self.exec(self.ctl, "ip", "route", "add", r.lan_net, "via", r.wan)
        self.routers[i] = r
        self._new_host_key(r)
        self._start_sshd(r)

    def _wait_reachable(self, r: Router) -> None:
        """Until LAN i reaches the C2 stand-in through router i (ARP on the bridge settles)."""
        deadline = time.monotonic() + 10
        while not self.probe(r.index, C2, timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError(f"LAN {r.index} does not reach {C2} through {r.ns}")
            time.sleep(0.05)

    # ---- sshd --------------------------------------------------------------------------------

    @property
    def client_key(self) -> Path:
        """The private key every router's sshd accepts for root (the public one beside it, .pub)."""
        return self.directory / "client_key"

    def _new_host_key(self, r: Router) -> None:
        for path in (r.host_key, Path(f"{r.host_key}.pub")):
            path.unlink(missing_ok=True)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{r.ns}", "-f", str(r.host_key))

    def _start_sshd(self, r: Router) -> None:
        # A home of the router's own: root's dotfiles on this machine (pyenv shims, say) are not the
        # router's, and what Ansible leaves in ~/.ansible goes with the fleet.
        home = r.directory / "home"
        home.mkdir(mode=0o700, exist_ok=True)
        config = r.directory / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {r.wan}:22",
            f"HostKey {r.host_key}",
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
            f"PidFile {r.directory / 'sshd.pid'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",
            "UsePAM no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            f"SetEnv HOME={home}",
            "",
        ]))
        log = r.directory / "sshd.log"
        start = log.stat().st_size if log.exists() else 0  # appended: only this start's lines count
        r.sshd = self.spawn(r.ns, [SSHD, "-D", "-e", "-f", str(config)], log=log)
        deadline = time.monotonic() + 10
        while "Server listening on" not in (text := log.read_bytes()[start:].decode(errors="replace")):
            if r.sshd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd in {r.ns} did not start: {text[-800:]}")
            time.sleep(0.02)

    def stop_sshd(self, i: int) -> None:
        """Router i unreachable over SSH (its network and LAN keep working)."""
        r = self.routers[i]
        if r.sshd is not None:
            _kill(r.sshd)
            r.sshd = None
        for pid in run("ip", "netns", "pids", r.ns, check=False).split():  # its open sessions too
            with contextlib.suppress(OSError, ValueError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    os.kill(int(pid), signal.SIGKILL)

    def start_sshd(self, i: int) -> None:
        if self.routers[i].sshd is None:
            self._start_sshd(self.routers[i])

    def rekey(self, i: int) -> None:
        """Router i "reinstalled": sshd restarted with a new host key."""
        self.stop_sshd(i)
        self._new_host_key(self.routers[i])
        self._start_sshd(self.routers[i])

    def ssh_argv(self, i: int, known_hosts: Path, *command: str) -> list[str]:
        """ssh as root to router i with the client key (run it inside ctl: fleet.exec(fleet.ctl, ...))."""
        return ["ssh", "-i", str(self.client_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
                f"root@{self.routers[i].wan}", *command]

    # ---- paths, commands and probes ------------------------------------------------------------

    def prefix(self, i: int) -> Path:
        """Router i's install prefix (mssp_prefix): the routers share one filesystem."""
        return self.directory / f"prefix-r{i}"

    def exec(self, ns: str, *argv: str, check: bool = True, input: str | None = None,
             timeout: float = 60) -> str:
        return run("ip", "netns", "exec", ns, *argv, check=check, input=input, timeout=timeout)

    def spawn(self, ns: str, argv: Sequence[str], *, ready: str | None = None, log: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A process inside `ns` in its own process group, killed at teardown (the controller:
        `msspctl server run` with log= and env=). `ready`: the line it prints on stdout once it
        serves; otherwise stdout and stderr go to `log` (appended; default: discarded)."""
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(log.open("ab")) if log is not None else subprocess.DEVNULL
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if ready is not None else out,
                stderr=subprocess.DEVNULL if ready is not None else subprocess.STDOUT,
                env=env, start_new_session=True,
            )
        self.processes.append(proc)
        if ready is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode(errors="replace")
            if ready not in line:
                raise RuntimeError(f"{argv[0]} in {ns} did not start: {line!r}")
        return proc

    def probe(self, i: int, target: str, *, timeout: float = 1.0) -> bool:
        """TCP port 80 of `target` from LAN i: True when "ok" came back."""
        out = self.exec(self.routers[i].lan_ns, sys.executable, "-c", _PROBE, json.dumps([target]),
                        str(timeout), "1")
        return bool(json.loads(out)[target])

    # ---- teardown ----------------------------------------------------------------------------

    def destroy(self) -> None:
        for proc in self.processes:
            _kill(proc)
        # Whatever else started inside (the agents a playbook started, their dnsmasq, ansible's
        # ssh masters) dies with its namespace's pids.
        for _ in range(3):
            pids = [p for ns in self.namespaces for p in run("ip", "netns", "pids", ns, check=False).split()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.1)
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.communicate(timeout=5)
