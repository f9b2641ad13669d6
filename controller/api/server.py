"""The tenant API's listener: uvicorn run as a task on the controller's own event loop.

We bind the socket ourselves, so a taken address is a ListenError at start (like the gRPC
listeners) and port 0 reports the port the kernel chose. The address is checked first: a
non-loopback listener without TLS is refused unless insecure HTTP was asked for explicitly, since
API keys travel in every request. uvicorn's own signal handling is off: the controller owns
SIGINT/SIGTERM and calls stop().
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from controller.domain.errors import ListenError

log = logging.getLogger("mssp.api")
START_TIMEOUT = 15.0
OFF = "off"


@dataclass(frozen=True)
class ListenPlan:
    host: str
    port: int
    tls: bool


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan_listen(
    listen: str, tls_cert: Path | None, tls_key: Path | None, insecure_http: bool
) -> ListenPlan | None:
    """Where and how to listen (None: the API is off), or ListenError saying what to change."""
    listen = listen.strip()
    if listen.lower() == OFF or not listen:
        return None
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ListenError(f"api listen address {listen!r} is not HOST:PORT (or \"off\")")
    if (tls_cert is None) != (tls_key is None):
        raise ListenError("the tenant API needs both --api-tls-cert and --api-tls-key for TLS, or neither")
    tls = tls_cert is not None
    if not tls and not insecure_http and not _is_loopback(host):
        raise ListenError(
            f"refusing to serve the tenant API on {listen} without TLS: API keys would cross the network "
            "in clear. Give --api-tls-cert and --api-tls-key, listen on loopback (127.0.0.1) behind a "
            "TLS proxy, or pass --api-insecure-http if the network is trusted")
    return ListenPlan(host=host, port=int(port_text), tls=tls)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP. Without
    # it a kept-alive connection's response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only, never a live listener
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port} (tenant API): {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the controller handles signals
        yield


class ApiServer:
    def __init__(self, app: Any, plan: ListenPlan, *, tls_cert: Path | None = None,
                 tls_key: Path | None = None, graceful_seconds: float = 2.0) -> None:
        self.app = app
        self.plan = plan
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.graceful_seconds = graceful_seconds
        self.port = 0
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.warm_up: asyncio.Task[bool] | None = None  # see warm_reports_after
        self._warming = False

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.plan.host in ("0.0.0.0", "") else "::1" if self.plan.host == "::" \
            else self.plan.host
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.plan.tls else 'http'}://{self.address}"

    async def start(self) -> str:
        """Bind and serve; the bound address ("host:port")."""
        config = uvicorn.Config(
            self.app, lifespan="off", log_level="warning", access_log=False, server_header=False,
            proxy_headers=False, timeout_graceful_shutdown=int(self.graceful_seconds) or 1,
            ssl_certfile=str(self.tls_cert) if self.tls_cert else None,
            ssl_keyfile=str(self.tls_key) if self.tls_key else None,
            h11_max_incomplete_event_size=32 * 1024,
        )
        try:
            config.load()  # reads the certificate now: a bad one fails the start, not the first request
        except (OSError, ValueError) as exc:
            raise ListenError(f"tenant API TLS: cannot load {self.tls_cert} / {self.tls_key}: {exc}"
                              ) from None
        sock = _bind(self.plan.host, self.plan.port)
        self.port = sock.getsockname()[1]
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="tenant-api")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not self._server.started:
            if self._task.done():
                exc = self._task.exception()
                raise ListenError(f"tenant API on {self.address} did not start: {exc}")
            if loop.time() > deadline:
                await self.stop()
                raise ListenError(f"tenant API on {self.address} did not start in {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.01)
        log.info("tenant API listening on %s", self.url)
        return self.address

    def warm_reports_after(self, delay: float) -> None:
        async def warm() -> bool:
            await asyncio.sleep(delay)  # stop() cancels this wait; the thread it cannot
            self._warming = True
            return await asyncio.to_thread(_warm_reports)

        self.warm_up = asyncio.create_task(warm(), name="report-warm-up")

    async def stop(self) -> None:
        if self.warm_up is not None:  # a thread cannot be cancelled: let it finish, leave nothing behind
            if not self._warming:
                self.warm_up.cancel()
            await asyncio.gather(self.warm_up, return_exceptions=True)
            self.warm_up = None
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.graceful_seconds + 3)
        except TimeoutError:
            self._server.force_exit = True
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 2)
        except Exception:  # a crashed server has nothing left to stop
            log.exception("tenant API server failed")
        self._server = None
        self._task = None


async def start_api(settings: Any, service: Any, listen: Any) -> ApiServer | None:
    """The controller's tenant API from its settings, on the port kept in `listen` (ListenState,
    name "api") when configured with port 0; None when api_listen is "off"."""
    from controller.api.app import create_app
    from controller.api.limits import ApiLimits

    plan = plan_listen(settings.api_listen, settings.api_tls_cert, settings.api_tls_key,
                       settings.api_insecure_http)
    if plan is None:
        return None
    plan = ListenPlan(host=plan.host, port=listen.port("api", plan.port), tls=plan.tls)
    server = ApiServer(create_app(service, ApiLimits.from_settings(settings)), plan,
                       tls_cert=settings.api_tls_cert, tls_key=settings.api_tls_key)
    try:
        await server.start()
    except ListenError as exc:
        raise ListenError(f"{exc}{listen.what('api', '')}") from None
    listen.record("api", server.port)
    if settings.api_warm_reports:
        server.warm_reports_after(settings.api_warm_reports_after_seconds)
    return server


def _warm_reports() -> bool:
    try:
        from controller.reports.render import warm_up

        warm_up()
    except Exception as exc:  # e.g. Pango missing: the PDF endpoint will say so; the API still serves
        log.warning("could not load the PDF report stack at start-up: %s", exc)
        return False
    return True
