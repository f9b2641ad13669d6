"""The controller's system-account connection(s): opened lazily, kept, replaced once closed.

Used for what only the system account may do (CONNZ and KICK in conn_limit.py, account JWT updates
and claims lookups in revocation.py). Few reconnect attempts: nats-py retries a first connect
forever otherwise (a caller holding a lock would hang while the broker is down); a connection that
gave up is closed and replaced on the next `get`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient


class SystemConnection:
    """`connect_options` gives the nats.connect arguments (servers=, TLS), `creds` the system
    account user's credentials; `on_open` runs on every new connection (subscriptions)."""

    def __init__(
        self,
        connect_options: Callable[[], Mapping[str, Any]],
        creds: Path,
        name: str,
        *,
        on_open: Callable[[NatsClient], Awaitable[None]] | None = None,
    ) -> None:
        self.connect_options = connect_options
        self.creds = creds
        self.name = name
        self.on_open = on_open
        self._nc: NatsClient | None = None

    async def get(self) -> NatsClient:
        if self._nc is not None and not self._nc.is_closed:
            return self._nc
        options: dict[str, Any] = {"connect_timeout": 5, "max_reconnect_attempts": 2,
                                   "reconnect_time_wait": 0.5, "name": self.name}
        options.update(self.connect_options())
        nc = await nats.connect(user_credentials=str(self.creds), **options)
        if self.on_open is not None:
            try:
                await self.on_open(nc)
            except BaseException:
                with contextlib.suppress(Exception):
                    await nc.close()
                raise
        self._nc = nc
        return nc

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None
