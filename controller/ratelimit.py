"""Per-key token buckets: a gateway may resync in a burst (start, reconnect, gap) but not in a loop.
A refused call says when to retry; the agent's resync backoff takes it from there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.domain.errors import DomainError


class RateLimited(DomainError):
    """Too many calls from one caller; the message says when to retry."""


@dataclass
class _Bucket:
    tokens: float
    at: float


class KeyedRateLimiter:
    """`burst` calls at once, then `per_second`; buckets that have refilled are forgotten, so the
    table holds only callers that were recently busy."""

    def __init__(
        self, *, burst: int, per_second: float, what: str = "calls",
        clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000,
    ) -> None:
        if burst < 1 or per_second <= 0:
            raise ValueError("a rate limit needs burst >= 1 and a positive rate")
        self.burst = burst
        self.per_second = per_second
        self.what = what
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one token for `key` or raise RateLimited."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:
                    self._forget_full(now)
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.per_second)
            bucket.at = now
            if bucket.tokens < 1.0:
                wait = (1.0 - bucket.tokens) / self.per_second
                raise RateLimited(
                    f"too many {self.what}: at most {self.burst} at once, then one every "
                    f"{1 / self.per_second:.1f}s; retry in {wait:.1f}s"
                )
            bucket.tokens -= 1.0

    def _forget_full(self, now: float) -> None:
        for key, b in list(self._buckets.items()):
            if b.tokens + (now - b.at) * self.per_second >= self.burst:
                del self._buckets[key]
