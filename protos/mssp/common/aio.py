"""Waiting on an event with a deadline without losing a cancellation.

On Python 3.11, ``asyncio.wait_for(event.wait(), t)`` returns normally when the task is cancelled in
the same instant the event is set (CPython gh-86296): a loop built on it ignores its stop() and the
awaiting stop() hangs forever. ``asyncio.timeout`` counts cancellations and re-raises them.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """True if the event is set within `seconds`; a cancellation always propagates."""
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel background tasks and wait until they have finished (None: nothing to stop). The
    tasks' CancelledError is expected; our own cancellation, if it arrives meanwhile, propagates."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
