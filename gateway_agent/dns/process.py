"""One dnsmasq process: started as a child of the agent, or adopted after an agent restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from gateway_agent.dns.config import DnsError, DnsSettings


class DnsmasqProcess:
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

