"""The metrics endpoint: prometheus_client's own HTTP server, in its own thread, on its own port
(`metrics_listen`; off unless set). Plain HTTP: bind it to loopback or a monitoring network. A
taken or unusable address is a ListenError at start, as for every other listener."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from controller.domain.errors import ListenError

log = logging.getLogger("mssp.controller.metrics")
OFF = "off"


def plan_metrics_listen(listen: str) -> tuple[str, int] | None:
    """(host, port) to bind, None when off (empty or "off"), or ListenError for a malformed value."""
    listen = listen.strip()
    if not listen or listen.lower() == OFF:
        return None
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ListenError(f"metrics listen address {listen!r} is not HOST:PORT (or \"off\")")
    return host, int(port_text)


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread
    host: str

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host == "0.0.0.0" else "::1" if self.host == "::" else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/metrics"

    async def stop(self) -> None:
        """shutdown() waits for the serving loop, and a scrape may be waiting on our event loop."""
        await asyncio.to_thread(self.server.shutdown)
        self.server.server_close()
        await asyncio.to_thread(self.thread.join, 5.0)


async def start_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve `registry` on host:port (0: a free port)."""
    try:
        server, thread = await asyncio.to_thread(start_http_server, port, addr=host, registry=registry)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port} (metrics): {exc.strerror or exc}") from None
    metrics = MetricsServer(server, thread, host)
    log.info("metrics listening on %s", metrics.url)
    return metrics
