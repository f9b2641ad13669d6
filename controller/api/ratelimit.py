"""Per-key rate limit: a fixed window of `limit` requests per `window` seconds for each API key
(requests with no valid key count against their client address instead).

Every response of a counted request carries the IETF draft fields (draft-ietf-httpapi-ratelimit-
headers, structured-field syntax): `RateLimit-Policy: "default";q=600;w=60` (the quota) and
`RateLimit: "default";r=599;t=42` (remaining, seconds to the reset); the request past the quota
gets 429 with Retry-After. One process serves the API, so the counters live in memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY = "default"
STATE_KEY = "mssp_ratelimit"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    window: int
    remaining: int
    reset: int  # seconds until the window resets

    def headers(self) -> dict[str, str]:
        out = {"RateLimit-Policy": f'"{POLICY}";q={self.limit};w={self.window}',
               "RateLimit": f'"{POLICY}";r={self.remaining};t={self.reset}'}
        if not self.allowed:
            out["Retry-After"] = str(self.reset)
        return out


class RateLimiter:
    def __init__(self, limit: int, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        if limit < 1 or window_seconds < 1:
            raise ValueError("rate limit and window must be positive")
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._epoch = -1
        self._counts: dict[str, int] = {}

    def hit(self, key: str) -> Decision:
        now = self.clock()
        epoch = int(now // self.window)
        reset = max(1, math.ceil((epoch + 1) * self.window - now))
        with self._lock:
            if epoch != self._epoch:  # a new window: every count starts over (and memory is freed)
                self._epoch = epoch
                self._counts = {}
            used = self._counts.get(key, 0) + 1
            self._counts[key] = used
        allowed = used <= self.limit
        return Decision(allowed=allowed, limit=self.limit, window=self.window,
                        remaining=max(0, self.limit - used), reset=reset)


def remember(scope_state: dict[str, object], decision: Decision) -> None:
    scope_state[STATE_KEY] = decision


class RateLimitHeaders:
    """Adds the decision a request's authentication recorded to its response, whatever the status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def with_headers(message: Message) -> None:
            decision = state.get(STATE_KEY)
            if message["type"] == "http.response.start" and isinstance(decision, Decision):
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in decision.headers().items()
                         if k.lower().encode() not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
