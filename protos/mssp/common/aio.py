"""Waiting on an event with a deadline without losing a cancellation.

On Python 3.11, ``asyncio.wait_for(event.wait(), t)`` returns normally when the task is cancelled in
the same instant the event is set (CPython gh-86296): a loop built on it ignores its stop() and the
awaiting stop() hangs forever. ``asyncio.timeout`` counts cancellations and re-raises them.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """True if the event is set within `seconds`; a cancellation always propagates."""
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
