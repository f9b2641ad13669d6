"""Polling with a deadline: the deadline catches hangs, it is not a timing assertion."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(condition: Callable[[], Awaitable[bool] | bool], within: float = 60.0,
                     interval: float = 0.05) -> None:
    """Poll `condition` (plain or async) until it is true; fails the test after `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                value = condition()
                if await value if inspect.isawaitable(value) else value:
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"condition not met within {within:.0f}s") from None
