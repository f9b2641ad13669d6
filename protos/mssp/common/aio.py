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


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None, resend: float = 0.5) -> None:
    """Cancel background tasks and wait until they have finished (None: nothing to stop).

    A library call built on 3.11's asyncio.wait_for (nats-py's request, for one) can swallow the
    cancel, so it is sent again every `resend` seconds until the task ends. Our own cancellation
    propagates; an error the task ended with is raised."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        while not task.done():
            await asyncio.wait({task}, timeout=resend)
            if not task.done():
                task.cancel()
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
