"""A loop waiting on its wake event must stop when cancelled, even if the event is set in the same
instant (Python 3.11's asyncio.wait_for drops that cancellation; stop() then hung in CI)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from mssp.common.aio import cancel_and_wait, wait_event

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


async def test_cancel_and_wait_resends_a_swallowed_cancel() -> None:
    """A task that swallows the first cancel (as nats-py's request can on 3.11) still stops."""
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 1:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, resend=0.05), 5)
    assert task.cancelled() and swallowed == 2


async def test_cancel_and_wait_raises_what_the_task_died_of() -> None:
    async def broken() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="boom"):
        await cancel_and_wait(task, None)
