"""Following the broker: its current URLs come from the controller, reconnects back off with jitter.

The controller's broker can move (a restart that found its port taken, an operator's new
nats_listen) or grow into a cluster. The agent asks GetBrokers (gateway API, mTLS: the answer is the
controller's) after every Sync and, while its NATS connection is failing, every few seconds; a
changed list is validated, saved in identity.json and handed to the live client, whose next
reconnect uses it. Reconnects back off exponentially, capped and jittered, so a fleet whose broker
restarts does not stampede it, and nothing about the controller being away is logged as a warning
more than once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import grpc
from nats import errors as nats_errors
from nats.aio.client import Client as NatsClient

from gateway_agent.identity import AgentIdentity
from mssp.common.natstls import connect_options, pinned_options, wants_tls, with_tls_scheme
from mssp.v1 import gateway_pb2, gateway_pb2_grpc

log = logging.getLogger("mssp.agent")

MAX_URLS = 16
MAX_URL_LENGTH = 256
URL_SCHEMES = ("nats", "tls")
RECONNECT_BASE = 0.25  # first wait after a broken connection (seconds, before jitter)
RECONNECT_CAP = 1.0  # a returning broker is found within this long (jitter: half to all of it)
CHANNEL_WAIT = 4.0  # while the controller is away, GetBrokers is tried at least this often
ANSWERED_BASE = 1.0  # the controller answered but NATS is still down: ask again after this...
ANSWERED_CAP = 30.0  # ...doubling up to this (a broker outage of its own needs no stampede)
WARN_EVERY = 60.0
RPC_TIMEOUT = 10.0
# The gateway channel's own reconnect back-off (gRPC jitters it): its default grows to 120 s,
# which after a long outage would keep Sync and GetBrokers failing long after the controller is back.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", int(RECONNECT_CAP * 1000)),
]


def channel_credentials(identity: AgentIdentity) -> grpc.ChannelCredentials:
    """mTLS with the gateway's certificate (read now: renewal replaces it) and the pinned CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=identity.ca_path.read_bytes(),
        private_key=identity.key_path.read_bytes(),
        certificate_chain=identity.cert_path.read_bytes(),
    )


async def open_channel(
    identity: AgentIdentity,
) -> tuple[grpc.aio.Channel, gateway_pb2_grpc.GatewayServiceStub]:
    creds = await asyncio.to_thread(channel_credentials, identity)
    name = identity.tls_server_name
    options = [("grpc.ssl_target_name_override", name)] if name else []
    channel = grpc.aio.secure_channel(identity.gateway_endpoint, creds, options=[*CHANNEL_OPTIONS, *options])
    return channel, gateway_pb2_grpc.GatewayServiceStub(channel)


def backoff(attempt: int, base: float = RECONNECT_BASE, cap: float = RECONNECT_CAP) -> float:
    """Exponential, capped, and jittered to between half and all of it."""
    return min(cap, base * 2 ** min(attempt, 20)) * random.uniform(0.5, 1.0)


def reconnect_handler(servers: list[Any], _info: dict[str, Any]) -> tuple[Any, float]:
    """nats-py reconnect_to_server_handler: the least-failed server, after a jittered back-off."""
    fewest = min(s.reconnects for s in servers)
    server = random.choice([s for s in servers if s.reconnects == fewest])
    return server, backoff(server.reconnects)


def valid_urls(urls: Sequence[str]) -> list[str]:
    """The controller's list, checked: 1..MAX_URLS nats:// or tls:// URLs with a host and a port."""
    if not 1 <= len(urls) <= MAX_URLS:
        raise ValueError(f"{len(urls)} broker URLs (1 to {MAX_URLS} expected)")
    out: list[str] = []
    for url in urls:
        if len(url) > MAX_URL_LENGTH or not url.isascii() or not url.isprintable():
            raise ValueError("a broker URL is too long or not printable ASCII")
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"broker URL {url!r}: {exc}") from exc
        if parts.scheme not in URL_SCHEMES or not parts.hostname or not port:
            raise ValueError(f"broker URL {url!r} is not nats:// or tls:// with a host and port")
        if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"broker URL {url!r} carries more than a host and port")
        out.append(url)
    return list(dict.fromkeys(out))


class AwayLog:
    """At most one warning a minute per kind ("away": the controller or broker cannot be reached;
    other kinds, such as a broker failing the certificate pin, are not hidden behind it). Repeats
    go to debug and are counted in the next warning."""

    def __init__(self, logger: logging.Logger = log, every: float = WARN_EVERY) -> None:
        self.logger = logger
        self.every = every
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, msg: str, *args: object, kind: str = "away") -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            self.logger.debug(msg, *args)
            return
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            msg, args = msg + " (%d similar messages since the last one)", (*args, suppressed)
        self._last[kind] = now
        self.logger.warning(msg, *args)


def nats_error_kind(exc: BaseException) -> str:
    """"away" for a broker that is down or unreachable; a TLS failure (pin, name) is its own kind."""
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, (OSError, TimeoutError, nats_errors.NoServersError, nats_errors.UnexpectedEOF,
                        nats_errors.ConnectionClosedError, nats_errors.StaleConnectionError)):
        return "away"
    return "nats"


class BrokerFollower:
    """Keeps identity.nats_urls and the live client's server pool on what the controller says."""

    def __init__(
        self, identity: AgentIdentity, away: AwayLog, channel: Callable[[], grpc.aio.Channel | None],
        stub: Callable[[], gateway_pb2_grpc.GatewayServiceStub | None],
        client: Callable[[], NatsClient | None], connected: Callable[[], bool],
        on_answer: Callable[[gateway_pb2.Brokers], None] | None = None,
    ) -> None:
        self.identity = identity
        self.away = away
        self.channel = channel
        self.stub = stub
        self.client = client
        self.connected = connected
        self.on_answer = on_answer  # the channels to follow and the current JWT (following.py)
        self._refresh: asyncio.Task[bool] | None = None
        self._follow: asyncio.Task[None] | None = None
        self.stopped = False  # closing the client calls disconnected_cb: start nothing then

    def refresh_soon(self) -> None:
        """After a Sync: ask in the background (never holds up the push worker)."""
        if not self.stopped and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.ensure_future(self.refresh())

    def broker_away(self) -> None:
        """NATS is failing: ask the controller every few seconds until NATS is back."""
        if not self.stopped and (self._follow is None or self._follow.done()):
            self._follow = asyncio.ensure_future(self._follow_until_connected())

    async def stop(self) -> None:
        self.stopped = True
        for task in (self._refresh, self._follow):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _follow_until_connected(self) -> None:
        """Asks as soon as the gateway channel is up again (a restarted controller), so a moved
        broker is found at once; while the controller answers and NATS stays down, less often."""
        answered = 0
        while not self.connected():
            channel = self.channel()
            if channel is not None:  # gRPC's own jittered, capped back-off (CHANNEL_OPTIONS) paces this
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(channel.channel_ready(), CHANNEL_WAIT)
            if self.connected():
                return
            if await self.refresh():
                await asyncio.sleep(backoff(answered, ANSWERED_BASE, ANSWERED_CAP))
                answered += 1
            else:
                await asyncio.sleep(backoff(0))

    async def refresh(self) -> bool:
        """True when the controller answered (with a list or a refusal), False when it is away."""
        stub = self.stub()
        if stub is None:
            return False
        try:
            reply = await stub.GetBrokers(gateway_pb2.GetBrokersRequest(), timeout=RPC_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                self.away.warning("%s: controller unreachable (%s); retrying", self.identity.label,
                                  exc.details())
                return False
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:  # an older controller: keep what we have
                self.away.warning("%s: the controller refused GetBrokers (%s)", self.identity.label,
                                  exc.details(), kind="refused")
            return True  # it answered: asking again at once would not change that
        if self.on_answer is not None:
            self.on_answer(reply)
        try:
            await self.use(valid_urls(list(reply.nats_urls)))
        except (ValueError, OSError) as exc:  # a bad list, or the pinned CA unreadable: keep ours
            self.away.warning("%s: ignoring the controller's broker list: %s", self.identity.label, exc,
                              kind="urls")
        return True

    async def use(self, urls: list[str]) -> None:
        """Adopt `urls`: never from tls:// back to clear text; saved, then given to the client."""
        ident = self.identity
        if wants_tls(ident.nats_urls) and not wants_tls(urls):
            urls = [with_tls_scheme(u) for u in urls]
        if urls == ident.nats_urls:
            return
        if wants_tls(urls):  # the pinned CA is read from disk
            servers, tls = await asyncio.to_thread(pinned_options, urls, ident.ca_path)
        else:  # nothing to read: no wait in the thread pool between the answer and the next reconnect
            servers, tls = connect_options(urls, None)
        old = ident.nats_urls
        nc = self.client()
        if nc is not None and not nc.is_closed:  # first, so the next reconnect does not wait on a disk
            nc.options.update(tls)  # the CA pinned at enrollment, when the new list is tls://
            nc.set_server_pool(servers)  # the next reconnect attempt uses the new list
        ident.nats_urls = urls
        try:
            await asyncio.to_thread(ident.save)  # atomic (write_private)
        except OSError:
            ident.nats_urls = old  # the next answer tries again
            raise
        log.info("%s: broker URLs now %s (were %s)", ident.label, ",".join(urls), ",".join(old))
