"""The gateway API's mutual-TLS listener, rebuilt on its own port when the trusted client CAs change.

Its credentials are fixed, not a per-handshake fetcher: gRPC calls a fetcher (Python, under the
GIL) before every new connection, and a fleet reconnecting after a restart had its handshakes
queue behind the controller's busy threads (bench/restart.py: agents learned a moved broker about
a second later). The CAs change only when a rollover begins (ca_set.py; it ends at a start), so
then the listener is stopped and started again with both CAs on the same port: connections drop
once and the agents reconnect within their back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from controller.ca_set import CaSet
from controller.domain.errors import ListenError

log = logging.getLogger(__name__)

STOP_GRACE = 1.0  # calls under way get this long to finish when the listener stops or reloads
REBIND_TRIES = 10


def bind(server: grpc.aio.Server, address: str, creds: grpc.ServerCredentials, what: str) -> int:
    """add_secure_port, failing loudly: depending on the version gRPC returns 0 or raises."""
    try:
        port = server.add_secure_port(address, creds)
    except RuntimeError:
        port = 0
    if not port:
        raise ListenError(f"cannot listen on {address} ({what}): the address is in use "
                          "(another server?) or not available here")
    return port


class GatewayListener:
    """One grpc.aio server at a time on `host`:port, trusting the client CAs `cas` holds now."""

    def __init__(
        self, host: str, cas: CaSet, key_pem: bytes, chain_pem: bytes, *, what: str,
        options: Sequence[tuple[str, Any]], interceptors: Sequence[grpc.aio.ServerInterceptor],
    ) -> None:
        self.host = host
        self.cas = cas
        self.key_pem = key_pem
        self.chain_pem = chain_pem
        self.what = what
        self.options = list(options)
        self.interceptors = list(interceptors)
        self.port = 0
        self.server: grpc.aio.Server | None = None
        self._register: Callable[[grpc.aio.Server], Awaitable[None]] | None = None
        self._bound_generation = -1
        self.generation = -1  # the CaSet generation the serving listener trusts (ca_announce.py waits on it)
        self._lock = asyncio.Lock()

    def bind(self, port: int) -> int:
        """Make the server and take the port (0: any free one); the servicers come with start()."""
        self.server, self.port = self._bound(port)
        return self.port

    async def start(self, register: Callable[[grpc.aio.Server], Awaitable[None]]) -> None:
        """`register` adds the servicers to a server (again on every reload)."""
        assert self.server is not None, "bind() first"
        self._register = register
        await self._serve()

    async def reload(self) -> None:
        """After the trusted CAs changed: the same port, the new CAs. No-op when they did not."""
        async with self._lock:
            if self.server is None or self._register is None or self.cas.generation == self.generation:
                return
            await self.server.stop(grace=STOP_GRACE)  # the port is free again (no SO_REUSEPORT)
            self.server = None
            self.server = await self._rebound()
            await self._serve()
            log.info("gateway API on port %d now trusts client certificates from %d CAs", self.port,
                     self.cas.client_roots_pem.count(b"BEGIN CERTIFICATE"))

    async def stop(self) -> None:
        async with self._lock:
            if self.server is not None:
                await self.server.stop(grace=STOP_GRACE)
                self.server = None

    async def _serve(self) -> None:
        assert self.server is not None and self._register is not None
        await self._register(self.server)
        await self.server.start()
        self.generation = self._bound_generation

    async def _rebound(self) -> grpc.aio.Server:
        """The same port again, retried briefly: the old socket may take a moment to go."""
        for _ in range(REBIND_TRIES - 1):
            try:
                return self._bound(self.port)[0]
            except ListenError:
                log.warning("gateway API: port %d not free again yet; retrying", self.port)
                await asyncio.sleep(0.5)
        return self._bound(self.port)[0]

    def _bound(self, port: int) -> tuple[grpc.aio.Server, int]:
        self._bound_generation = self.cas.generation
        creds = grpc.ssl_server_credentials([(self.key_pem, self.chain_pem)],
                                            root_certificates=self.cas.client_roots_pem,
                                            require_client_auth=True)
        server = grpc.aio.server(options=self.options, interceptors=self.interceptors)
        return server, bind(server, f"{self.host}:{port}", creds, self.what)
