"""A loop waiting on its wake event must stop when cancelled, even if the event is set in the same
instant (Python 3.11's asyncio.wait_for drops that cancellation; stop() then hung in CI)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from mssp.common.aio import wait_event

Waiter = Callable[[asyncio.Event], Awaitable[object]]


async def _stops_when_woken_and_cancelled_together(waiter: Waiter, spins: int) -> bool:
    wake, laps = asyncio.Event(), 0

    async def loop() -> None:
        nonlocal laps
        while True:
            await waiter(wake)
            wake.clear()
            laps += 1

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)  # the loop is waiting
    wake.set()
    for _ in range(spins):  # let the event's waiter finish before the cancel lands
        await asyncio.sleep(0)
    task.cancel()
    try:
        await asyncio.wait_for(asyncio.shield(task), 0.5)
    except asyncio.CancelledError:
        return True
    except TimeoutError:
        return False
    finally:
        task.cancel()
        await asyncio.sleep(0)
    return True  # pragma: no cover - the loop never returns


async def test_wait_event_never_swallows_a_cancellation_racing_the_event() -> None:
    for spins in range(4):
        assert await _stops_when_woken_and_cancelled_together(lambda e: wait_event(e, 5.0), spins)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for was fixed in Python 3.12")
async def test_the_race_is_real_with_wait_for() -> None:
    """Proves the test above can fail: the same race loses the cancel with asyncio.wait_for."""
    results = [await _stops_when_woken_and_cancelled_together(lambda e: asyncio.wait_for(e.wait(), 5.0), s)
               for s in range(4)]
    assert not all(results)


async def test_wait_event_times_out_and_reports_a_set_event() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.0) is True
