"""TLS for NATS client connections, the same for the controller and the agent.

Trust is one pinned CA (the controller's, which the agent got at enrollment), never the system store:
a broker whose certificate does not chain to it is refused. The client speaks TLS first
(`tls_handshake_first`; the broker is configured with `handshake_first: true`), because nats-py
otherwise reads the server's plaintext INFO and only upgrades when the server asks for it, so a
machine in the middle could keep the connection in clear by not asking.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

TLS_SCHEME = "tls"
PLAIN_SCHEME = "nats"


def url_scheme(url: str) -> str:
    return urlsplit(url).scheme.lower() if "://" in url else PLAIN_SCHEME


def url_host(url: str) -> str:
    """The host of a NATS URL ("nats://[::1]:4222" -> "::1"; a bare "host:port" is accepted)."""
    host = urlsplit(url if "://" in url else f"{PLAIN_SCHEME}://{url}").hostname
    if not host:
        raise ValueError(f"NATS URL {url!r} has no host")
    return host


def with_tls_scheme(url: str) -> str:
    """The same server with the tls:// scheme (what agents are handed when the broker does TLS)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    return f"{TLS_SCHEME}://{rest}"


def wants_tls(urls: Sequence[str]) -> bool:
    return any(url_scheme(u) == TLS_SCHEME for u in urls)


def pinned_context(ca_pem: bytes) -> ssl.SSLContext:
    """Verifies the broker's chain against `ca_pem` only, and its name against the URL's host."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError) as exc:
        raise ValueError("the pinned NATS CA is not a PEM certificate") from exc
    return ctx


def connect_options(urls: Sequence[str], ca_pem: bytes | None) -> tuple[list[str], dict[str, Any]]:
    """(servers, extra nats.connect kwargs). When any URL is tls:// every URL becomes tls:// (a mixed
    list would let a reconnect fall back to clear text) and the pinned context is required."""
    servers = list(urls)
    if not wants_tls(servers):
        return servers, {}
    if not ca_pem:
        raise ValueError("a tls:// NATS URL needs the controller's CA to verify the broker")
    servers = [with_tls_scheme(u) for u in servers]
    return servers, {"tls": pinned_context(ca_pem), "tls_handshake_first": True}


def pinned_options(urls: Sequence[str], ca_file: Path) -> tuple[list[str], dict[str, Any]]:
    """connect_options with the CA read from `ca_file`, only when TLS is wanted (blocking I/O)."""
    return connect_options(urls, Path(ca_file).read_bytes() if wants_tls(urls) else None)


def url_port(url: str) -> int:
    return urlsplit(url if "://" in url else f"{PLAIN_SCHEME}://{url}").port or 4222


async def speaks_pinned_tls(url: str, ca_pem: bytes, wait: float = 5.0) -> bool:
    """Whether the broker at `url` completes a TLS handshake first thing, with a certificate that
    chains to `ca_pem` and names the URL's host: a TLS-first broker of ours. A plaintext broker
    (it sends INFO, not a ServerHello), a foreign certificate or no answer all give False."""
    host = url_host(url)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, url_port(url), ssl=pinned_context(ca_pem), server_hostname=host),
            wait,
        )
    except (OSError, TimeoutError, ssl.SSLError, ValueError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass
    return True


class TlsUpgrade:
    """Watches a plain client's errors; on a TLS-first broker of ours, makes the client use TLS.

    A TLS-first broker (handshake_first) never sends a plaintext INFO, so a nats:// client (an agent
    enrolled before the broker did TLS, a controller told nats://) would time out forever. When a
    plain attempt fails and the same host completes a TLS handshake whose certificate chains to the
    pinned CA, the client switches to tls:// for good: its next attempt and every reconnect. Only
    ever up; a tls:// list is never touched, so nothing falls back to clear text.
    """

    def __init__(self, urls: Sequence[str], ca_pem: bytes | None, label: str = "",
                 on_upgrade: Callable[[], None] | None = None) -> None:
        self.urls = list(urls)
        self.ca_pem = ca_pem
        self.label = label
        self.on_upgrade = on_upgrade
        self.upgraded = False

    def applies(self) -> bool:
        return bool(self.ca_pem) and not self.upgraded and not wants_tls(self.urls)

    async def on_error(self, nc: Any, exc: Exception) -> None:
        """`nc` is a nats-py Client (not imported here). A failed plain attempt (typically no INFO
        within connect_timeout) while we hold a CA: probe the hosts with TLS, and switch the client
        over (its options and server pool, which every reconnect reads) if one is our broker."""
        if not self.applies() or nc.is_closed or isinstance(exc, ConnectionRefusedError):
            return  # nothing listens there (a broker down or moved): a TLS probe would be refused too
        assert self.ca_pem is not None
        for url in self.urls:
            if await speaks_pinned_tls(url, self.ca_pem):
                servers, tls = connect_options([with_tls_scheme(u) for u in self.urls], self.ca_pem)
                nc.options.update(tls)
                nc.set_server_pool(servers)
                self.upgraded = True
                if self.on_upgrade is not None:
                    self.on_upgrade()
                log.warning("%s: the broker at %s speaks TLS first; using %s from now on (%s)",
                            self.label, url, ",".join(servers), exc)
                return
