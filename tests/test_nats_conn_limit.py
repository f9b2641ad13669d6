"""One gateway credential holds at most a few broker connections (review finding 5).

The subscription cap is per connection, so without this one credential could open hundreds of
connections and get the subscription amplification back. nats-server has no per-user connection
limit, so the controller kicks the excess (controller/nats/conn_limit.py). Real nats-server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

from nats.aio.client import Client as NatsClient

from controller.nats.auth import GATEWAY_MAX_SUBS
from controller.nats.conn_limit import MIN_GAP, ConnectionLimiter, over_limit
from controller.simulation import wait_until
from tests.support.fleet import controller_settings, start_controller
from tests.support.nats import NatsBroker

HOSTILE_CONNECTIONS = 20
BURST = 20


async def _per_user(system: NatsClient, account: str) -> Counter[str]:
    reply = await system.request(f"$SYS.REQ.ACCOUNT.{account}.CONNZ",
                                 json.dumps({"auth": True, "limit": 4096}).encode(), timeout=5)
    conns = json.loads(reply.data)["data"].get("connections") or []
    return Counter(str(c.get("authorized_user")) for c in conns)


async def test_one_credential_ends_up_with_at_most_the_limit(nats_broker: NatsBroker) -> None:
    account = nats_broker.identity.account_public_key
    controller_key = nats_broker.identity.controller_user.public_key.decode()
    hostile_creds, hostile_key = nats_broker.gateway_creds("acme", "evil")  # one credential
    good_creds, good_key = nats_broker.gateway_creds("acme", "good")
    system = await nats_broker.connect_system()
    controllers = [await nats_broker.connect_controller() for _ in range(3)]
    good = await nats_broker.connect(good_creds, allow_reconnect=False)
    hostile = [await nats_broker.connect(hostile_creds, allow_reconnect=False)
               for _ in range(HOSTILE_CONNECTIONS)]
    before = await _per_user(system, account)
    assert before[hostile_key] == HOSTILE_CONNECTIONS  # the broker alone lets them all in

    limiter = ConnectionLimiter(account, {controller_key}, lambda: {"servers": [nats_broker.url]},
                                nats_broker.write_creds("system", nats_broker.identity.system_creds()),
                                max_per_user=2, period=3600)
    await limiter.start()
    try:
        async def settled() -> bool:
            counts = await _per_user(system, account)
            return counts[hostile_key] <= 2

        for _ in range(200):
            if await settled():
                break
            await asyncio.sleep(0.1)
        counts = await _per_user(system, account)
        assert counts[hostile_key] == 2
        assert sum(nc.is_connected for nc in hostile) == 2
        assert hostile[0].is_connected and hostile[1].is_connected  # the oldest are kept
        assert counts[good_key] == 1 and good.is_connected  # other gateways untouched
        assert counts[controller_key] == 3 and all(nc.is_connected for nc in controllers)  # exempt
        assert limiter.stats.kicked == HOSTILE_CONNECTIONS - 2
        # So the subscription amplification is bounded by 2 x GATEWAY_MAX_SUBS for one credential.

        # Connecting again afterwards is kicked on the CONNECT event, not only by the (hour-long) period.
        late = await nats_broker.connect(hostile_creds, allow_reconnect=False)
        await wait_until(lambda: not late.is_connected, within=30)
        assert (await _per_user(system, account))[hostile_key] == 2

        # A burst of CONNECTs (a fleet back after a restart) costs a pass per MIN_GAP, not one each.
        checks, started = limiter.stats.checks, time.monotonic()
        burst = [await nats_broker.connect(nats_broker.gateway_creds("acme", f"gw-{i}")[0],
                                           allow_reconnect=False) for i in range(BURST)]
        await wait_until(lambda: limiter.stats.checks > checks, within=30)
        await asyncio.sleep(1.0)
        passes = limiter.stats.checks - checks
        assert passes <= (time.monotonic() - started) / MIN_GAP + 2 < BURST
        for nc in burst:
            await nc.close()
    finally:
        await limiter.stop()
    assert 2 * GATEWAY_MAX_SUBS < HOSTILE_CONNECTIONS * GATEWAY_MAX_SUBS


def test_over_limit_keeps_the_oldest_per_user() -> None:
    conns = [{"cid": c, "authorized_user": u} for c, u in
             [(5, "UA"), (1, "UA"), (9, "UA"), (2, "UB"), (3, "UC"), (4, "UC"), (7, "UC"), (8, "")]]
    assert sorted(over_limit(conns, 2, {"UC"})) == [9]
    assert sorted(over_limit(conns, 1, set())) == [4, 5, 7, 9]


async def test_controller_runs_the_limit(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path).model_copy(update={"nats_max_connections_per_gateway": 3})
    ctl = await start_controller(settings, tmp_path)
    try:
        limiter = ctl.app.conn_limit
        assert limiter is not None and limiter.max_per_user == 3
        await wait_until(lambda: limiter.stats.checks >= 1, within=30)
        assert limiter.stats.errors == 0  # it reached the broker's CONNZ through the system account
    finally:
        await ctl.op.close()
        await ctl.app.stop()
