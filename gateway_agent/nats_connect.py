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

from mssp.common.natstls import TlsUpgrade, pinned_options

ErrorCb = Callable[[Exception], Awaitable[None]]


def _read_if_present(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


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
