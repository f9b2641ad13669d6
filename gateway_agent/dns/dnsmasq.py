"""dnsmasq as the router's DNS enforcement point, run as a child of the agent.

What goes where, and why (dnsmasq(8), NOTES: "SIGHUP does NOT re-read the configuration file"; it
re-reads only hosts files, DHCP files and ``--servers-file``, which may hold ``server=`` lines only):

* IOC domains change often, so they live in the servers-file, re-read on SIGHUP without a restart
  and without dropping a query (the socket stays open; queries wait in its buffer):
  - ``nxdomain`` mode: ``server=/evil.test/`` (a domain with no server is answered locally:
    NXDOMAIN for it and every subdomain);
  - ``null`` mode: ``server=/evil.test/127.0.0.1#<sink_port>``, forwarding to a second, static
    dnsmasq on loopback that answers 0.0.0.0 / :: for every name (``address=/#/#``). ``address=``
    lines are not allowed in a servers-file, so this keeps IOC changes restart-free here too.
* Upstream servers are in the servers-file as well.
* Category and rule domains need ``nftset=`` lines in the main configuration: a change there
  (a policy that edits a category list) restarts dnsmasq. The new configuration is checked with
  ``dnsmasq --test`` first; the restart itself leaves a gap of a few milliseconds in which a UDP
  query is refused and retried by the client.
* Every query is logged (``log-queries=extra``) to a file in the state dir for telemetry; rotate it
  with `rotate_query_log` (copy + truncate: dnsmasq keeps appending to the same file).

Everything written into a configuration line is validated again here (domains by the controller's own
rule, set names, addresses, paths), whatever the caller checked before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway_agent.nft import FAMILY, TABLE
from gateway_agent.nft.compile import parse_address, valid_domain  # mssp.common.names' check
from mssp.common.clock import now_ms

log = logging.getLogger("mssp.agent.dns")

SINKHOLE_MODES = ("nxdomain", "null")
_PATH_RE = re.compile(r"/[A-Za-z0-9_./+-]{1,4000}")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_SET_BASE_RE = re.compile(r"[a-z][a-z0-9_]{0,59}")
_UPSTREAM_RE = re.compile(r"(?P<addr>[0-9A-Fa-f:.]{2,45})(?:#(?P<port>[0-9]{1,5}))?")


class DnsError(Exception):
    """dnsmasq refused a configuration or did not start; the previous configuration stays."""


def _path(p: Path) -> str:
    text = str(p)
    if not _PATH_RE.fullmatch(text) or "/../" in text:
        raise DnsError(f"unsafe path for a dnsmasq configuration: {text!r}")
    return text


def parse_upstream(text: str) -> str:
    """``addr`` or ``addr#port``, the address re-rendered from its parsed form."""
    m = _UPSTREAM_RE.fullmatch(text) if isinstance(text, str) else None
    addr = m and (parse_address(m["addr"], 4) or parse_address(m["addr"], 6))
    if not m or not addr:
        raise DnsError(f"invalid DNS upstream {text!r} (want an address, optionally #port)")
    if m["port"] is None:
        return addr
    port = int(m["port"])
    if not 1 <= port <= 65535:
        raise DnsError(f"invalid DNS upstream port in {text!r}")
    return f"{addr}#{port}"


@dataclass(frozen=True)
class DnsSettings:
    """Where and how the agent's dnsmasq runs."""

    directory: Path  # configuration, servers-file, pid files
    listen: tuple[str, ...] = ("127.0.0.1",)
    port: int = 53
    upstreams: tuple[str, ...] = ()
    sinkhole: str = "nxdomain"  # or "null": answer 0.0.0.0 / ::
    query_log: Path | None = None  # default: <directory>/queries.log
    # root by default: the servers-file is re-read on SIGHUP from the agent's private (0700) state
    # dir, which an unprivileged dnsmasq could not read. Point `directory` somewhere readable to
    # run it as another user.
    user: str = "root"
    cache_size: int = 10000
    max_ttl: int = 300  # caps what clients cache, so category sets see their lookups again soon
    sink_port: int = 5399
    binary: str = "dnsmasq"
    netns: str | None = None
    start_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.sinkhole not in SINKHOLE_MODES:
            raise DnsError(f"sinkhole must be one of {SINKHOLE_MODES}, not {self.sinkhole!r}")
        if not self.listen or any(parse_address(a, 4) is None and parse_address(a, 6) is None
                                  for a in self.listen):
            raise DnsError(f"listen must be IP addresses, got {self.listen!r}")
        for up in self.upstreams:
            parse_upstream(up)
        if not _USER_RE.fullmatch(self.user):
            raise DnsError(f"invalid user name {self.user!r}")
        for value in (self.port, self.sink_port):
            if type(value) is not int or not 1 <= value <= 65535:
                raise DnsError(f"invalid port {value!r}")
        for value in (self.cache_size, self.max_ttl):
            if type(value) is not int or value < 0:
                raise DnsError(f"invalid number {value!r}")
        _path(self.directory)
        if self.query_log is not None:
            _path(self.query_log)

    @property
    def log_path(self) -> Path:
        return self.query_log or self.directory / "queries.log"


@dataclass
class DnsPlan:
    """What DNS enforces: sinkholed domains (with expiry) and domains whose answers fill nft sets."""

    sinkholes: dict[str, int] = field(default_factory=dict)  # domain -> expires_at_ms, 0 = never
    nftsets: dict[str, list[str]] = field(default_factory=dict)  # domain -> set bases (+ _v4/_v6)


def render_main(settings: DnsSettings, nftsets: Mapping[str, list[str]], servers_path: Path,
                pid_path: Path) -> str:
    """The main configuration: listening, logging, the servers-file and the nftset lines."""
    lines = [
        "# Generated by mssp-agent; rewritten on policy changes. Do not edit.",
        "no-resolv",
        "no-hosts",
        "no-poll",
        "bind-interfaces",
        *(f"listen-address={parse_address(a, 4) or parse_address(a, 6)}" for a in settings.listen),
        f"port={settings.port}",
        f"user={settings.user}",
        f"pid-file={_path(pid_path)}",
        f"cache-size={settings.cache_size}",
        f"max-ttl={settings.max_ttl}",
        f"max-cache-ttl={settings.max_ttl}",
        "log-queries=extra",
        f"log-facility={_path(settings.log_path)}",
        "log-async=50",
        f"servers-file={_path(servers_path)}",
    ]
    for domain in sorted(nftsets):
        bases = sorted(set(nftsets[domain]))
        if not valid_domain(domain) or not bases or not all(_SET_BASE_RE.fullmatch(b) for b in bases):
            raise DnsError(f"refusing nftset entry {domain!r} -> {bases!r}")
        targets = ",".join(f"{v}#{FAMILY}#{TABLE}#{b}_v{v}" for b in bases for v in (4, 6))
        lines.append(f"nftset=/{domain}/{targets}")
    return "\n".join(lines) + "\n"


def render_servers(settings: DnsSettings, sinkholes: Mapping[str, int], now_ms: int) -> str:
    """The servers-file: upstreams, then one line per live sinkholed domain."""
    lines = ["# Generated by mssp-agent; re-read on SIGHUP. Do not edit."]
    lines += [f"server={parse_upstream(u)}" for u in settings.upstreams]
    target = "" if settings.sinkhole == "nxdomain" else f"127.0.0.1#{settings.sink_port}"
    for domain in sorted(sinkholes):
        expires = sinkholes[domain]
        if expires and expires <= now_ms:
            continue
        if not valid_domain(domain):
            raise DnsError(f"refusing sinkhole domain {domain!r}")
        lines.append(f"server=/{domain}/{target}")
    return "\n".join(lines) + "\n"


def render_sink(settings: DnsSettings, pid_path: Path) -> str:
    """The static null-answer instance for ``sinkhole="null"``: 0.0.0.0 / :: for every name."""
    return "\n".join([
        "# Generated by mssp-agent: answers 0.0.0.0 / :: to the main instance's sinkholed names.",
        "no-resolv",
        "no-hosts",
        "bind-interfaces",
        "listen-address=127.0.0.1",
        f"port={settings.sink_port}",
        f"user={settings.user}",
        f"pid-file={_path(pid_path)}",
        "address=/#/#",
    ]) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class Prepared:
    main: str
    servers: str
    sinkholes: dict[str, int]


class _Instance:
    """One dnsmasq process: started by us, or adopted from the pid file after an agent restart."""

    def __init__(self, settings: DnsSettings, conf: Path, pid_path: Path, err_path: Path) -> None:
        self.settings = settings
        self.conf = conf
        self.pid_path = pid_path
        self.err_path = err_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    def _ours(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"--conf-file={self.conf}".encode() in cmdline

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and self._ours(self.pid)

    def adopt(self) -> bool:
        """Take over a dnsmasq left running by a previous agent process (fail-static)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return False
        if self._ours(pid):
            self.pid = pid
            return True
        return False

    def start(self) -> None:
        self.pid_path.unlink(missing_ok=True)
        prefix = ["ip", "netns", "exec", self.settings.netns] if self.settings.netns else []
        argv = [*prefix, self.settings.binary, "--keep-in-foreground", f"--conf-file={self.conf}"]
        with open(self.err_path, "ab") as err:
            # A session of its own: a signal to the agent's process group does not take DNS down.
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)
        self.pid = self.proc.pid
        deadline = time.monotonic() + self.settings.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError, ValueError):
                if int(self.pid_path.read_text().strip()) == self.pid:
                    return  # the pid file is written after the sockets are bound
            time.sleep(0.005)
        self.stop()
        raise DnsError(f"dnsmasq did not start: {self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        try:
            return self.err_path.read_text(errors="replace")[-500:].strip() or "no output"
        except OSError:
            return "no output"

    def signal(self, sig: int) -> None:
        if self.pid is not None and self.alive():
            os.kill(self.pid, sig)

    def stop(self) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.alive():
                os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=3.0)
        self.proc = None
        self.pid = None


class DnsmasqManager:
    """Keeps a dnsmasq child in line with a DnsPlan: SIGHUP for sinkholes, restart for nftsets."""

    def __init__(self, settings: DnsSettings) -> None:
        self.settings = settings
        d = settings.directory
        self.conf_path = d / "dnsmasq.conf"
        self.servers_path = d / "servers.conf"
        self.pid_path = d / "dnsmasq.pid"
        self.main = _Instance(settings, self.conf_path, self.pid_path, d / "dnsmasq.err")
        self.sink = _Instance(settings, d / "sink.conf", d / "sink.pid", d / "sink.err")
        self.lock = threading.RLock()
        self.sinkholes: dict[str, int] = {}
        self.restarts = 0
        self.reloads = 0
        self._timer: threading.Timer | None = None
        self._closed = False

    # ---- configuration -----------------------------------------------------------------------

    def prepare(self, plan: DnsPlan) -> Prepared:
        """Render and check the configuration (``dnsmasq --test``) without touching the running one."""
        d = self.settings.directory
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        servers = render_servers(self.settings, plan.sinkholes, now_ms())
        check_servers = d / "servers.check"
        check_main = d / "dnsmasq.check"
        try:
            _write(check_servers, servers)
            _write(check_main, render_main(self.settings, plan.nftsets, check_servers, self.pid_path))
            proc = subprocess.run([self.settings.binary, "--test", f"--conf-file={check_main}"],
                                  capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DnsError(f"cannot check the dnsmasq configuration: {exc}") from exc
        finally:
            check_main.unlink(missing_ok=True)
            check_servers.unlink(missing_ok=True)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).decode(errors="replace").strip()[:500]
            raise DnsError(f"dnsmasq rejected the configuration: {detail}")
        main = render_main(self.settings, plan.nftsets, self.servers_path, self.pid_path)
        return Prepared(main, servers, dict(plan.sinkholes))

    def commit(self, prepared: Prepared) -> None:
        """Make a prepared configuration live: SIGHUP when only servers changed, else restart."""
        with self.lock:
            self.sinkholes = dict(prepared.sinkholes)
            _write(self.servers_path, prepared.servers)
            old = self.conf_path.read_text() if self.conf_path.exists() else None
            if old != prepared.main:
                _write(self.conf_path, prepared.main)
            if self.settings.sinkhole == "null":
                self._ensure_sink()
            if not self.main.alive() and not self.main.adopt():
                self.main.start()
            elif old != prepared.main:
                self.main.stop()
                self.main.start()
                self.restarts += 1
            else:
                self.main.signal(signal.SIGHUP)  # re-reads the servers-file and clears the cache
                self.reloads += 1
            self._schedule_expiry()

    def apply(self, plan: DnsPlan) -> None:
        self.commit(self.prepare(plan))

    def update_sinkholes(self, changes: Mapping[str, int | None]) -> None:
        """An IOC delta: add (expires_at_ms, 0 = never) or drop (None) domains; SIGHUP only."""
        with self.lock:
            for domain, expires in changes.items():
                if expires is None:
                    self.sinkholes.pop(domain, None)
                elif valid_domain(domain):
                    self.sinkholes[domain] = expires
            self._reload_servers()

    def _reload_servers(self) -> None:
        text = render_servers(self.settings, self.sinkholes, now_ms())
        current = self.servers_path.read_text() if self.servers_path.exists() else None
        if text != current:
            _write(self.servers_path, text)
            if self.main.alive() or self.main.adopt():
                self.main.signal(signal.SIGHUP)
                self.reloads += 1
        self._schedule_expiry()

    def _schedule_expiry(self) -> None:
        """Domain IOCs have no kernel timeout: a timer drops each at its expiry (while the agent runs)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = now_ms()
        upcoming = [e for e in self.sinkholes.values() if e > now]
        if not upcoming or self._closed:
            return
        delay = (min(upcoming) - now) / 1000 + 0.01
        self._timer = threading.Timer(delay, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        with self.lock:
            if self._closed:
                return
            now = now_ms()
            self.sinkholes = {d: e for d, e in self.sinkholes.items() if not e or e > now}
            self._reload_servers()

    def _ensure_sink(self) -> None:
        text = render_sink(self.settings, self.sink.pid_path)
        path = self.sink.conf
        changed = not path.exists() or path.read_text() != text
        if changed:
            _write(path, text)
        if changed and self.sink.alive():
            self.sink.stop()
        if not self.sink.alive() and not self.sink.adopt():
            self.sink.start()

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.main.pid if self.main.alive() else None

    def rotate_query_log(self, max_bytes: int) -> Path | None:
        """Move the query log aside once it is over `max_bytes` (copy + truncate; no signal needed)."""
        path = self.settings.log_path
        try:
            if path.stat().st_size <= max_bytes:
                return None
        except OSError:
            return None
        rotated = path.with_name(path.name + ".1")
        shutil.copyfile(path, rotated)
        with open(path, "r+b") as fh:
            fh.truncate(0)
        return rotated

    def close(self) -> None:
        """Stop the expiry timer; dnsmasq keeps running (fail-static: DNS enforcement stays)."""
        with self.lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def stop(self) -> None:
        """Stop dnsmasq (uninstall, tests)."""
        self.close()
        with self.lock:
            self.main.stop()
            self.sink.stop()
