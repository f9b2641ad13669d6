"""During a CA rollover's overlap, make every gateway ask GetBrokers, where the CA bundle is.

The bundle itself only travels over mTLS. What reaches the fleet over NATS is an announcement of the
current push-signing key set (signed by the active key, as after a key rotation), which agents
answer by asking GetBrokers; the same set changes nothing for them. Sent when a rollover begins (or
at start during one) and again every `every` seconds, since NATS may drop a message for an agent
that was away for a moment; agents also ask after every resync, reconnect and start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.ca_set import CaSet
from controller.signing_keys import SigningKeys
from mssp.v1 import common_pb2

log = logging.getLogger(__name__)

EVERY = 600.0
POLL = 1.0


class CaAnnouncer:
    def __init__(self, cas: CaSet, keys: SigningKeys,
                 announce: Callable[[Ed25519PrivateKey, common_pb2.SigningKeys], Awaitable[bool]],
                 every: float = EVERY, served: Callable[[], int] | None = None) -> None:
        self.cas, self.keys, self.announce, self.every = cas, keys, announce, every
        # The generation the gateway listener trusts: announce only once it takes the new CAs.
        self.served = served or (lambda: cas.generation)
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ca-announce")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        generation, at = -1, 0.0
        while True:
            served = self.served()
            if self.cas.rollover is not None and served == self.cas.generation and (
                    served != generation or time.monotonic() - at >= self.every):
                generation, at = served, time.monotonic()
                if await self.announce(self.keys.active, self.keys.trusted()):
                    self.sent += 1
                    log.info("CA rollover under way: asked every gateway to fetch the CA bundle")
            await asyncio.sleep(POLL)
