"""A small in-process cache for tenant read models (usage statements, security reports).

Telemetry lands in 30 s batches and reports are by the hour, so an open month's report a few
seconds old is as good as a fresh one; a closed month's never changes. Caching per (tenant, what,
period) turns a burst of requests into one query per key and period. Concurrent misses of one key
wait for a single computation (single flight) instead of all hitting the database; the size is
bounded (least recently used entries go first).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class _Slot:
    __slots__ = ("done", "error", "expires", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.expires = 0.0  # set when computed (math.inf: never expires); an error slot is dropped


class ReadCache:
    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._slots: OrderedDict[Hashable, _Slot] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self._clock = clock

    def get(self, key: Hashable, ttl_seconds: float | Callable[[T], float | None] | None,
            compute: Callable[[], T]) -> T:
        """The cached value of `key`, computed by `compute` when missing or older than ttl_seconds
        (None: never expires; a callable: the lifetime of the value it is given). An error is raised
        to every waiter and not cached."""
        with self._lock:
            slot = self._slots.get(key)
            fresh = slot is not None and (not slot.done.is_set() or slot.expires > self._clock())
            if slot is not None and fresh:
                self._slots.move_to_end(key)
                owner = False
            else:
                slot = self._slots[key] = _Slot()
                owner = True
                while len(self._slots) > self._max:
                    self._slots.popitem(last=False)
        if not owner:
            slot.done.wait()
            if slot.error is not None:
                raise slot.error
            return slot.value  # type: ignore[no-any-return]
        try:
            slot.value = compute()
            ttl = ttl_seconds(slot.value) if callable(ttl_seconds) else ttl_seconds
            slot.expires = math.inf if ttl is None else self._clock() + ttl
        except BaseException as exc:
            slot.error = exc
            with self._lock:
                if self._slots.get(key) is slot:
                    del self._slots[key]
            raise
        finally:
            slot.done.set()
        return slot.value  # type: ignore[no-any-return]

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()
