"""The tenant read cache: one computation per key under concurrent misses, expiry, errors not kept."""

from __future__ import annotations

import threading
import time

import pytest

from controller.services.read_cache import ReadCache


def test_concurrent_misses_compute_once() -> None:
    cache = ReadCache()
    calls = 0
    gate = threading.Event()

    def slow() -> int:
        nonlocal calls
        calls += 1
        gate.wait(5)
        return 42

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", 60, slow))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in threads:
        t.join(5)
    assert results == [42] * 8
    assert calls == 1


def test_entries_expire_and_closed_ones_do_not() -> None:
    now = [100.0]
    cache = ReadCache(clock=lambda: now[0])
    counter = iter(range(100))
    assert cache.get("open", 30, lambda: next(counter)) == 0
    assert cache.get("closed", None, lambda: next(counter)) == 1
    now[0] += 29
    assert cache.get("open", 30, lambda: next(counter)) == 0
    now[0] += 2
    assert cache.get("open", 30, lambda: next(counter)) == 2
    now[0] += 10**6
    assert cache.get("closed", None, lambda: next(counter)) == 1


def test_errors_reach_the_caller_and_are_not_cached() -> None:
    cache = ReadCache()

    def boom() -> int:
        raise ValueError("db down")

    with pytest.raises(ValueError, match="db down"):
        cache.get("k", 60, boom)
    assert cache.get("k", 60, lambda: 7) == 7


def test_size_is_bounded_oldest_first() -> None:
    cache = ReadCache(max_entries=2)
    cache.get("a", None, lambda: 1)
    cache.get("b", None, lambda: 2)
    cache.get("a", None, lambda: 0)  # a is now the most recently used
    cache.get("c", None, lambda: 3)  # evicts b
    assert cache.get("a", None, lambda: -1) == 1
    assert cache.get("b", None, lambda: -2) == -2


def test_lifetime_chosen_from_the_value() -> None:
    """A usage statement says whether its month is closed: that decides how long it is kept."""
    now = [0.0]
    cache = ReadCache(clock=lambda: now[0])
    values = iter([{"closed": False}, {"closed": True}, {"closed": False}])

    def lifetime(v: dict[str, bool]) -> float:
        return 3600 if v["closed"] else 30

    assert cache.get("m", lifetime, lambda: next(values)) == {"closed": False}
    now[0] = 31  # the open statement expired; the month was closed since
    assert cache.get("m", lifetime, lambda: next(values)) == {"closed": True}
    now[0] = 31 + 3599
    assert cache.get("m", lifetime, lambda: next(values)) == {"closed": True}
    now[0] = 31 + 3601
    assert cache.get("m", lifetime, lambda: next(values)) == {"closed": False}
