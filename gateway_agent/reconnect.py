"""After a NATS reconnect, resync only when something was missed.

A reconnect used to start a resync at once. After a controller restart that is every agent opening
a Sync stream in the same second, and the first push after the restart waits behind a thousand of
them. A push missed while away is found anyway: each channel's beacon (every few seconds) or its
next push shows the gap, and a gap resyncs at once. So after a reconnect the agent waits for each
channel's next beacon or push that proves it current; a channel that says nothing for a jittered
FALLBACK_SECONDS (a lost beacon, beacons turned off) gets the resync it would have had. A channel
still at seq 0 is not waited for: the controller beacons only heads above 0, so anything published
on it while we were away shows up as a beacon with a gap (and the heartbeat compares versions too).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable

FALLBACK_SECONDS = (8.0, 12.0)


class ReconnectCheck:
    def __init__(self, resync: Callable[[], None],
                 fallback_seconds: tuple[float, float] = FALLBACK_SECONDS) -> None:
        self._resync = resync
        self._fallback = fallback_seconds
        self._pending: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> frozenset[str]:
        """The channels not yet proven current since the last reconnect."""
        return frozenset(self._pending)

    def start(self, channels: Iterable[str]) -> None:
        self.cancel()
        self._pending = set(channels)
        if self._pending:
            delay = random.uniform(*self._fallback)
            self._timer = asyncio.get_running_loop().call_later(delay, self._expired)

    def confirm(self, channel: str) -> None:
        """`channel` delivered a beacon or push in order: nothing was missed on it."""
        self._pending.discard(channel)
        if not self._pending:
            self.cancel()

    def cancel(self) -> None:
        """Nothing left to check (all confirmed, a resync ran, or the agent stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = set()

    def _expired(self) -> None:  # the timer runs only while a channel is pending
        self._timer = None
        self._pending = set()
        self._resync()
