"""Keeps the agent's dnsmasq in line with the desired state (see dns/config.py for what goes where).

Sinkholed domains change with a SIGHUP (dnsmasq re-reads the servers-file); nftset lines change
with a restart after ``dnsmasq --test`` accepted the new configuration. Domain IOCs have no kernel
timeout, so a timer drops each at its expiry while the agent runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway_agent.clock import enforcement_ms
from gateway_agent.dns.config import DnsError, DnsPlan, DnsSettings, render_main, render_servers, render_sink
from gateway_agent.dns.process import DnsmasqProcess
from mssp.common.names import valid_domain

log = logging.getLogger("mssp.agent.dns")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class Prepared:
    main: str
    servers: str
    sinkholes: dict[str, int]


class DnsmasqManager:
    """Keeps a dnsmasq child in line with a DnsPlan: SIGHUP for sinkholes, restart for nftsets."""

    def __init__(self, settings: DnsSettings) -> None:
        self.settings = settings
        d = settings.directory
        self.conf_path = d / "dnsmasq.conf"
        self.servers_path = d / "servers.conf"
        self.pid_path = d / "dnsmasq.pid"
        self.main = DnsmasqProcess(settings, self.conf_path, self.pid_path, d / "dnsmasq.err")
        self.sink = DnsmasqProcess(settings, d / "sink.conf", d / "sink.pid", d / "sink.err")
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
        servers = render_servers(self.settings, plan.sinkholes, enforcement_ms())
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
        text = render_servers(self.settings, self.sinkholes, enforcement_ms())
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
        now = enforcement_ms()
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
            now = enforcement_ms()
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
