"""gateway_agent/reconnect.py: after a reconnect, a resync only when a channel stays silent."""

from __future__ import annotations

import asyncio

from gateway_agent.reconnect import ReconnectCheck


async def test_confirmed_channels_cancel_the_fallback_resync() -> None:
    calls: list[int] = []
    check = ReconnectCheck(lambda: calls.append(1), fallback_seconds=(0.05, 0.05))
    check.start({"global", "tenant.t1"})
    assert check.waiting == {"global", "tenant.t1"}
    check.confirm("global")
    check.confirm("other")  # not ours: ignored
    assert check.waiting == {"tenant.t1"}
    check.confirm("tenant.t1")
    await asyncio.sleep(0.15)
    assert calls == [] and not check.waiting


async def test_a_silent_channel_gets_one_resync() -> None:
    calls: list[int] = []
    check = ReconnectCheck(lambda: calls.append(1), fallback_seconds=(0.05, 0.05))
    check.start({"global", "tenant.t1"})
    check.confirm("global")
    await asyncio.sleep(0.15)
    assert calls == [1] and not check.waiting
    await asyncio.sleep(0.1)
    assert calls == [1]


async def test_a_new_reconnect_restarts_the_check_and_cancel_stops_it() -> None:
    calls: list[int] = []
    check = ReconnectCheck(lambda: calls.append(1), fallback_seconds=(0.1, 0.1))
    check.start({"global"})
    await asyncio.sleep(0.06)
    check.start({"global"})  # the timer starts over
    await asyncio.sleep(0.06)
    assert calls == []
    check.cancel()  # e.g. a resync ran
    await asyncio.sleep(0.1)
    assert calls == [] and not check.waiting
