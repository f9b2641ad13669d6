"""TLS for NATS client connections, the same for the controller and the agent.

Trust is one pinned CA (the controller's, which the agent got at enrollment), never the system store:
a broker whose certificate does not chain to it is refused. The client speaks TLS first
(`tls_handshake_first`; the broker is configured with `handshake_first: true`), because nats-py
otherwise reads the server's plaintext INFO and only upgrades when the server asks for it, so a
machine in the middle could keep the connection in clear by not asking.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
