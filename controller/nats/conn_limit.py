"""At most a few broker connections per gateway credential (review finding 5).

The gateway JWT caps subscriptions per connection (auth.GATEWAY_MAX_SUBS), but one credential could
open hundreds of connections and multiply that cap. nats-server 2.15 has no per-user connection
limit: user JWT limits are subs/data/payload (plus src/times), and `conn` / max_connections exists
only per account, where it would cap the whole fleet. So the controller enforces it: on every
client CONNECT event of the gateway account, and every `period` as a backstop, it reads the
account's CONNZ (with auth, which names each connection's user nkey) through the system account
and KICKs (nats-server >= 2.10) every connection of a user beyond `max_per_user`, newest first.
The controller's own user is exempt. The agent itself needs one connection; 2 leaves room for a
reconnect that arrives before the broker noticed the old socket died.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient

from controller.nats.system import SystemConnection
from mssp.common.aio import cancel_and_wait, wait_event

log = logging.getLogger(__name__)

MAX_CONNECTIONS_PER_GATEWAY = 2
CONNZ_PAGE = 1024
REQUEST_TIMEOUT = 5.0
MIN_GAP = 2.0  # seconds between two passes, however many CONNECT events come in


@dataclass
class ConnLimitStats:
    checks: int = 0
    kicked: int = 0
    errors: int = 0


def over_limit(connections: list[Mapping[str, Any]], max_per_user: int, exempt: set[str]) -> list[int]:
    """cids to kick: per user, everything past its `max_per_user` oldest connections."""
    by_user: dict[str, list[int]] = {}
    for conn in connections:
        user = str(conn.get("authorized_user") or "")
        if user and user not in exempt:
            by_user.setdefault(user, []).append(int(conn["cid"]))  # cids grow with connection order
    return [cid for cids in by_user.values() for cid in sorted(cids)[max_per_user:]]


class ConnectionLimiter:
    """Kicks gateway connections beyond `max_per_user` per user nkey, logging each one."""

    def __init__(
        self,
        account: str,
        exempt: set[str],
        connect_options: Callable[[], Mapping[str, Any]],
        creds: Path,
        *,
        max_per_user: int = MAX_CONNECTIONS_PER_GATEWAY,
        period: float = 10.0,
        min_gap: float = MIN_GAP,
    ) -> None:
        if max_per_user < 1:
            raise ValueError("max_per_user must be at least 1")
        self.account = account
        self.exempt = exempt
        self.connect_options = connect_options
        self.creds = creds
        self.max_per_user = max_per_user
        self.period = period
        self.min_gap = min_gap
        self.stats = ConnLimitStats()
        self._system = SystemConnection(connect_options, creds, "mssp-controller-connlimit",
                                        on_open=self._subscribe)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="nats-conn-limit")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self._system.close()

    async def _subscribe(self, nc: NatsClient) -> None:
        await nc.subscribe(f"$SYS.ACCOUNT.{self.account}.CONNECT", cb=self._on_connect)

    async def _on_connect(self, _msg: Any) -> None:
        self._wake.set()

    async def _connections(self, nc: NatsClient) -> tuple[str, list[Mapping[str, Any]]]:
        """(server id, every connection of the account), paging through CONNZ."""
        conns: list[Mapping[str, Any]] = []
        server_id, offset = "", 0
        while True:
            request = {"auth": True, "offset": offset, "limit": CONNZ_PAGE}
            reply = await nc.request(f"$SYS.REQ.ACCOUNT.{self.account}.CONNZ",
                                     json.dumps(request).encode(), timeout=REQUEST_TIMEOUT)
            body = json.loads(reply.data)
            if "error" in body:
                raise RuntimeError(f"CONNZ refused: {body['error']}")
            server_id = str(body["server"]["id"])
            page = body["data"].get("connections") or []
            conns.extend(page)
            offset += len(page)
            if not page or offset >= int(body["data"].get("total", 0)):
                return server_id, conns

    async def check(self) -> int:
        """One pass: kick what is over the limit; returns how many were kicked."""
        self.stats.checks += 1
        nc = await self._system.get()
        server_id, conns = await self._connections(nc)
        kicked = 0
        users = {int(c["cid"]): str(c.get("authorized_user")) for c in conns}
        for cid in over_limit(conns, self.max_per_user, self.exempt):
            reply = await nc.request(f"$SYS.REQ.SERVER.{server_id}.KICK", json.dumps({"cid": cid}).encode(),
                                     timeout=REQUEST_TIMEOUT)
            if "error" in json.loads(reply.data):
                continue  # already gone
            kicked += 1
            log.warning("NATS user %s holds more than %d connections; kicked connection %d",
                        users.get(cid, "?"), self.max_per_user, cid)
        self.stats.kicked += kicked
        return kicked

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.check()
            except Exception as exc:  # the broker is away or slow: try again next time
                self.stats.errors += 1
                log.warning("NATS connection limit check failed: %s", exc)
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # nats-py can swallow a cancel (while flushing)
                raise asyncio.CancelledError
            # A fleet reconnecting after a restart sends a CONNECT event per gateway: one CONNZ pass
            # (the whole account, parsed here) per gap then, not one after another while they last.
            await asyncio.sleep(self.min_gap)
            await wait_event(self._wake, max(0.0, self.period - self.min_gap))
