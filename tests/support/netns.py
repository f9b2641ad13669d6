"""A three-namespace network for enforcement tests: LAN host -> gateway -> WAN, with guaranteed cleanup.

    with Topology.create(tmp_path) as topo:
        topo.connect("203.0.113.66")          # TCP from the LAN host, True if it got through
        topo.dns_query("c2.evil.test")         # through the gateway's resolver

Addresses come only from the documentation ranges:

    LAN host  192.0.2.10/25       2001:db8:1::10/64     (namespace mssp-t-lan-<suffix>)
    gateway   192.0.2.1/25 (lan0) 2001:db8:1::1/64      (namespace mssp-t-gw-<suffix>)
              192.0.2.129/25 (wan0) 2001:db8:2::1/64
    WAN       192.0.2.130/25      2001:db8:2::2/64      (namespace mssp-t-wan-<suffix>)
      on its loopback: the hosts below, each serving TCP port 80 ("ok") and an authoritative
      dnsmasq on 203.0.113.53 for the *.test names below.

Namespace names carry a random suffix; every namespace, process and file made here is removed
when the context exits, also when the test failed or was interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

C2 = "203.0.113.66"
C2_V6 = "2001:db8:66::66"
STORAGE = "198.51.100.30"
WEB = "198.51.100.80"
WEB_V6 = "2001:db8:80::80"
CONTROLLER = "203.0.113.5"
WAN_DNS = "203.0.113.53"
OTHER = "203.0.113.77"
LAN_HOST = "192.0.2.10"
LAN_HOST_V6 = "2001:db8:1::10"
GW_LAN = "192.0.2.1"
WAN_HOSTS = (C2, C2_V6, STORAGE, WEB, WEB_V6, CONTROLLER, WAN_DNS, OTHER)
WAN_NAMES = {
    "files.storage.test": [STORAGE],
    "c2.evil.test": [C2, C2_V6],
    "www.ok.test": [WEB],
    "ctl.mssp.test": [CONTROLLER],
}

TOOLS = ("ip", "nft", "dnsmasq")


def missing_requirements() -> str | None:
    """Why the namespace tests cannot run here, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces and nftables need root"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (run `bash .ci/sysdeps.sh`)"
    return None


def run(*argv: str, check: bool = True, input: str | None = None, timeout: float = 30) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


_SERVER = textwrap.dedent("""
    import socket, sys, threading
    def serve(family, addr):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, 80)); s.listen(64)
        def loop():
            while True:
                c, _ = s.accept()
                try:
                    c.settimeout(2)
                    c.recv(65536)
                    c.sendall(b"ok\\n")
                except OSError:
                    pass
                c.close()
        threading.Thread(target=loop, daemon=True).start()
    serve(socket.AF_INET, "0.0.0.0"); serve(socket.AF_INET6, "::")
    print("ready", flush=True)
    sys.stdin.read()
""")

_PROBE = textwrap.dedent("""
    import json, socket, sys, threading
    targets, timeout, payload = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    out = {}
    def probe(host):
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect((host, 80))
                s.sendall(b"x" * payload)
                out[host] = s.recv(16) == b"ok\\n"
        except OSError:
            out[host] = False
    threads = [threading.Thread(target=probe, args=(t,)) for t in targets]
    [t.start() for t in threads]; [t.join() for t in threads]
    print(json.dumps(out))
""")

def dns_lookup(server: str, name: str, qtype: str = "A", *, port: int = 53,
               timeout: float = 2.0) -> tuple[int | None, list[str]]:
    """(rcode, addresses) of one DNS query over UDP; rcode None when no answer came (3 tries)."""
    qid = random.randrange(65536)
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack(">HH", {"A": 1, "AAAA": 28}[qtype], 1)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    data = b""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for _ in range(3):
            try:
                sock.sendto(query, (server, port))
                data = sock.recv(4096)
                break
            except OSError:
                continue
    if len(data) < 12 or struct.unpack(">H", data[:2])[0] != qid:
        return None, []
    _, flags, qdcount, ancount, _, _ = struct.unpack(">HHHHHH", data[:12])
    pos = 12

    def skip_name(pos: int) -> int:
        while True:
            n = data[pos]
            if n == 0:
                return pos + 1
            if n & 0xC0 == 0xC0:
                return pos + 2
            pos += n + 1

    for _ in range(qdcount):
        pos = skip_name(pos) + 4
    addresses = []
    for _ in range(ancount):
        pos = skip_name(pos)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        rdata = data[pos:pos + rdlen]
        pos += rdlen
        if rtype == 1:
            addresses.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            addresses.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return flags & 0xF, addresses


_DNS = textwrap.dedent(f"""
    import json, sys
    sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
    from tests.support.netns import dns_lookup
    print(json.dumps(dns_lookup(sys.argv[1], sys.argv[2], sys.argv[3])))
""")


@dataclass
class Topology:
    suffix: str
    directory: Path
    lan: str = ""
    gw: str = ""
    wan: str = ""
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def create(cls, parent: Path) -> Iterator[Topology]:
        suffix = secrets.token_hex(3)
        directory = parent / f"netns-{suffix}"
        directory.mkdir(parents=True)
        topo = cls(suffix=suffix, directory=directory)
        try:
            topo._build()
            yield topo
        finally:
            topo.destroy()

    def ns(self, role: str) -> str:
        name = f"mssp-t-{role}-{self.suffix}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        # No duplicate address detection: links are usable at once (DAD would hold IPv6 ~2 s).
        for conf in ("all", "default"):
            self.exec(name, "sysctl", "-q", "-w", f"net.ipv6.conf.{conf}.accept_dad=0")
        return name

    def exec(self, ns: str, *argv: str, check: bool = True, input: str | None = None) -> str:
        return run("ip", "netns", "exec", ns, *argv, check=check, input=input)

    def _build(self) -> None:
        self.lan, self.gw, self.wan = self.ns("lan"), self.ns("gw"), self.ns("wan")
        run("ip", "link", "add", "eth0", "netns", self.lan, "type", "veth", "peer", "name", "lan0",
            "netns", self.gw)
        run("ip", "link", "add", "wan0", "netns", self.gw, "type", "veth", "peer", "name", "eth0",
            "netns", self.wan)
        for ns in (self.lan, self.gw, self.wan):
            self.exec(ns, "ip", "link", "set", "lo", "up")
        lan, gw, wan = self.lan, self.gw, self.wan
        self._addr(lan, "eth0", "192.0.2.10/25", "2001:db8:1::10/64")
        self._addr(gw, "lan0", "192.0.2.1/25", "2001:db8:1::1/64")
        self._addr(gw, "wan0", "192.0.2.129/25", "2001:db8:2::1/64")
        self._addr(wan, "eth0", "192.0.2.130/25", "2001:db8:2::2/64")
        for host in WAN_HOSTS:
            self.exec(wan, "ip", "addr", "add", f"{host}/{128 if ':' in host else 32}", "dev", "lo", "nodad")
        self.exec(lan, "ip", "route", "add", "default", "via", "192.0.2.1")
        self.exec(lan, "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1")
        self.exec(gw, "ip", "route", "add", "default", "via", "192.0.2.130")
        self.exec(gw, "ip", "-6", "route", "add", "default", "via", "2001:db8:2::2")
        self.exec(wan, "ip", "route", "add", "192.0.2.0/25", "via", "192.0.2.129")
        self.exec(wan, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:2::1")
        self.exec(gw, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        self.exec(gw, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        self._start_servers()
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until the LAN host reaches the WAN servers over IPv4 and IPv6 (neighbour discovery)."""
        deadline = time.monotonic() + 10
        while True:
            result = self.probe([WEB, WEB_V6], timeout=0.5)
            if all(result.values()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topology not reachable: {result}")
            time.sleep(0.05)

    def _addr(self, ns: str, dev: str, v4: str, v6: str) -> None:
        self.exec(ns, "ip", "addr", "add", v4, "dev", dev)
        self.exec(ns, "ip", "addr", "add", v6, "dev", dev, "nodad")
        self.exec(ns, "ip", "link", "set", dev, "up")

    def spawn(self, ns: str, argv: Sequence[str], *, ready: str | None = None) -> subprocess.Popen[str]:
        """A process inside `ns`, in its own process group, killed at teardown."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self.processes.append(proc)
        if ready is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if ready not in line:
                raise RuntimeError(f"{argv[0]} in {ns} did not start: {line!r} {proc.stderr.read()!r}")
        return proc

    def _start_servers(self) -> None:
        self.spawn(self.wan, [sys.executable, "-c", _SERVER], ready="ready")
        conf = self.directory / "wan-dnsmasq.conf"
        lines = ["no-resolv", "no-hosts", "bind-interfaces", f"listen-address={WAN_DNS}", "port=53",
                 "user=root", f"pid-file={self.directory / 'wan-dnsmasq.pid'}",
                 f"log-facility={self.directory / 'wan-dnsmasq.log'}"]
        for name, addrs in WAN_NAMES.items():
            lines += [f"address=/{name}/{a}" for a in addrs]
        conf.write_text("\n".join(lines) + "\n")
        self.spawn(self.wan, ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"])
        pid_file = self.directory / "wan-dnsmasq.pid"
        deadline = time.monotonic() + 5
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    # ---- probes from the LAN host ------------------------------------------------------------

    def probe(self, targets: Sequence[str], *, timeout: float = 1.0, payload: int = 1,
              ns: str | None = None) -> dict[str, bool]:
        """TCP port 80 of each target from the LAN host (in parallel): True where "ok" came back."""
        out = self.exec(ns or self.lan, sys.executable, "-c", _PROBE, json.dumps(list(targets)), str(timeout),
                        str(payload))
        return json.loads(out)

    def connect(self, target: str, **kwargs: object) -> bool:
        return self.probe([target], **kwargs)[target]  # type: ignore[arg-type]

    def dns_query(self, name: str, qtype: str = "A", server: str = GW_LAN) -> tuple[int | None, list[str]]:
        """(rcode, addresses) of a query from the LAN host to `server` (the gateway by default)."""
        rcode, addresses = json.loads(self.exec(self.lan, sys.executable, "-c", _DNS, server, name, qtype))
        return rcode, addresses

    def nft(self, *args: str, check: bool = True) -> str:
        return self.exec(self.gw, "nft", *args, check=check)

    # ---- teardown ----------------------------------------------------------------------------

    def destroy(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.communicate(timeout=5)
        # Anything else started inside (a dnsmasq the test forgot) dies with its namespace's pids.
        for ns in self.namespaces:
            pids = run("ip", "netns", "pids", ns, check=False).split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
