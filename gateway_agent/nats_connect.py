"""The agent's NATS connection, including the one-way move from nats:// to tls://.

Agents enrolled before the broker did TLS stored nats:// URLs. A TLS-first broker (handshake_first)
never sends them a plaintext INFO, so they would time out forever; `TlsUpgrade` (mssp.common.natstls)
moves such a client to tls:// with the CA pinned at enrollment once the broker proves it is ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient

from gateway_agent.brokers import reconnect_handler
from gateway_agent.identity import AgentIdentity
from mssp.common.natstls import TlsUpgrade, pinned_options

ErrorCb = Callable[[Exception], Awaitable[None]]


def _read_if_present(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


async def connect_agent(identity: AgentIdentity, **callbacks: Any) -> NatsClient:
    """The agent's connection: its own credentials and inbox, capped and jittered reconnects."""
    return await connect(
        identity.nats_urls, identity.ca_path, label=identity.label,  # the broker must chain to our CA
        error_cb=callbacks.pop("error_cb"),
        user_credentials=str(identity.creds_path),  # read on every connect: renewal replaces it
        inbox_prefix=f"_INBOX_{identity.gateway_id}",
        name=f"mssp-agent {identity.label}",
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_to_server_handler=reconnect_handler,
        connect_timeout=5,
        **callbacks,
    )


async def connect(
    urls: Sequence[str], ca_path: Path, *, error_cb: ErrorCb, label: str = "", **options: Any
) -> NatsClient:
    """nats.connect with the pinned CA for tls:// URLs, and the nats:// -> tls:// upgrade."""
    servers, tls = await asyncio.to_thread(pinned_options, urls, ca_path)
    ca_pem = None if tls else await asyncio.to_thread(_read_if_present, ca_path)
    upgrade = TlsUpgrade(servers, ca_pem, label)
    nc = NatsClient()

    async def on_error(exc: Exception) -> None:
        await upgrade.on_error(nc, exc)
        await error_cb(exc)

    await nc.connect(servers=servers, **tls, error_cb=on_error, **options)
    return nc
