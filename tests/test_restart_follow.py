"""A controller restart must not strand agents (issue 9, item 1), through the real thing: a real
controller (embedded nats-server, SQLite, gRPC on loopback) restarted on the same data dir, with
real agents running in-process.

Agents here heartbeat every 5 minutes, so nothing but NATS can bring them a push within the
deadlines: a push that arrives proves the agent is back on push, not waiting for a resync.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from controller.app import ControllerApp
from controller.config import Settings
from controller.domain.errors import ListenError
from controller.listen_state import LISTEN_FILE
from controller.service import ControllerService
from controller.simulation import SimulatedAgent, enroll_agent, wait_until
from controller.store.db import Database
from gateway_agent import brokers
from gateway_agent.identity import AgentIdentity
from tests.support.fleet import RunningController, controller_settings, start_controller

AGENTS = 5
BACK_WITHIN = 20.0  # generous: CPU is shared; the bench measures the real figures
PUSH_WITHIN = 5.0  # far below the 300 s heartbeat: only NATS can bring it this fast


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def fleet(tmp_path: Path, settings: Settings, n: int = AGENTS) -> AsyncIterator[
        tuple[RunningController, list[SimulatedAgent]]]:
    ctl = await start_controller(settings, tmp_path)
    sims: list[SimulatedAgent] = []
    try:
        await ctl.op.create_tenant("acme")
        for i in range(n):
            sims.append(await enroll_agent(ctl.op, "acme", f"gw{i}", tmp_path / "agents" / f"gw{i}",
                                           heartbeat_interval=300.0))
        await wait_until(lambda: all(s.agent.synced.is_set() and s.agent.nats_connected for s in sims),
                         within=BACK_WITHIN)
        # The resync queued when NATS came up must be done too, or a test counting resyncs races it.
        await wait_until(lambda: all(not s.agent._resync_queued and not s.agent.resyncing for s in sims),
                         within=BACK_WITHIN)
        yield ctl, sims
    finally:
        for sim in sims:
            await sim.stop()
        await ctl.op.close()
        await ctl.app.stop()


async def restart(ctl: RunningController, settings: Settings) -> None:
    """Stop the controller (the agents keep running) and start a new one on the same data dir."""
    await ctl.op.close()
    await ctl.app.stop()
    again = await start_controller(settings, ctl.root)
    ctl.app, ctl.op = again.app, again.op


async def pushed_to_all(ctl: RunningController, sims: list[SimulatedAgent], value: str) -> float:
    await ctl.op.add_ioc(value)
    return await wait_until(lambda: all(value in s.ioc_values() for s in sims), within=PUSH_WITHIN)


async def test_restart_keeps_every_port_and_agents_are_back_on_push(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path)  # every listener on port 0
    async with fleet(tmp_path, settings) as (ctl, sims):
        before = (ctl.app.grpc_address, ctl.app.gateway_address, list(ctl.app.nats_urls))
        await pushed_to_all(ctl, sims, "192.0.2.1")
        kept = json.loads((settings.data_dir / LISTEN_FILE).read_text())
        assert set(kept) == {"grpc", "gateway", "nats", "api"}
        api_url = ctl.app.api.url if ctl.app.api else ""
        await restart(ctl, settings)
        assert ctl.app.api is not None and ctl.app.api.url == api_url  # the tenant API's port is kept too
        assert (ctl.app.grpc_address, ctl.app.gateway_address, ctl.app.nats_urls) == before
        await wait_until(lambda: all(s.agent.nats_connected for s in sims), within=BACK_WITHIN)
        await pushed_to_all(ctl, sims, "192.0.2.2")
        assert all(s.agent.identity.nats_urls == before[2] for s in sims)


async def test_a_reconnect_resyncs_only_what_was_missed(tmp_path: Path) -> None:
    """After a restart with nothing new, the beacons prove every agent current: no Sync stampede.
    A change committed while the controller was down reaches every agent through a beacon's gap
    (1 s beacons here), long before the fallback resync (8-12 s) would bring it."""
    settings = controller_settings(tmp_path)
    async with fleet(tmp_path, settings) as (ctl, sims):
        resyncs = [s.agent.push_stats.resyncs for s in sims]
        await restart(ctl, settings)
        await wait_until(lambda: all(s.agent.nats_connected for s in sims), within=BACK_WITHIN)
        await wait_until(lambda: all(not s.agent.reconnect_check.waiting for s in sims), within=PUSH_WITHIN)
        assert [s.agent.push_stats.resyncs for s in sims] == resyncs

        await ctl.op.close()
        await ctl.app.stop()
        offline = Database(settings.database_url)  # what an operator did while it was down
        ControllerService(offline).add_ioc("192.0.2.9")
        offline.dispose()
        again = await start_controller(settings, ctl.root)
        ctl.app, ctl.op = again.app, again.op
        await wait_until(lambda: all(s.agent.nats_connected for s in sims), within=BACK_WITHIN)
        await wait_until(lambda: all("192.0.2.9" in s.ioc_values() for s in sims), within=6.0)


async def test_agents_follow_a_broker_that_moved_to_another_port(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path)
    async with fleet(tmp_path, settings) as (ctl, sims):
        old_urls = list(ctl.app.nats_urls)
        gateway = ctl.app.gateway_address
        moved = settings.model_copy(update={"nats_listen": f"127.0.0.1:{_free_port()}"})
        await restart(ctl, moved)
        new_urls = list(ctl.app.nats_urls)
        assert new_urls != old_urls and ctl.app.gateway_address == gateway
        await wait_until(lambda: all(s.agent.nats_connected and s.agent.identity.nats_urls == new_urls
                                     for s in sims), within=BACK_WITHIN)
        await pushed_to_all(ctl, sims, "192.0.2.3")
        for sim in sims:  # saved: the agent's next start goes straight to the new broker
            assert AgentIdentity.load(sim.state_dir).nats_urls == new_urls
        assert ctl.app.embedded_nats is not None
        kept = json.loads((settings.data_dir / LISTEN_FILE).read_text())
        assert kept["nats"] == ctl.app.embedded_nats.port  # a later start without nats_listen keeps it


async def test_a_taken_broker_port_moves_the_broker_and_agents_follow(tmp_path: Path) -> None:
    """What keeps agents connected when the kept broker port is taken during the outage: the broker
    starts on a free port (recorded) and the agents learn it over the gateway API."""
    settings = controller_settings(tmp_path)
    async with fleet(tmp_path, settings, n=2) as (ctl, sims):
        assert ctl.app.embedded_nats is not None
        old_port = ctl.app.embedded_nats.port
        await ctl.op.close()
        await ctl.app.stop()
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
            squatter.bind(("127.0.0.1", old_port))
            squatter.listen()
            again = await start_controller(settings, tmp_path)
            ctl.app, ctl.op = again.app, again.op
            assert ctl.app.embedded_nats is not None and ctl.app.embedded_nats.port != old_port
            kept = json.loads((settings.data_dir / LISTEN_FILE).read_text())
            assert kept["nats"] == ctl.app.embedded_nats.port
            await wait_until(lambda: all(s.agent.nats_connected for s in sims), within=BACK_WITHIN)
            await pushed_to_all(ctl, sims, "192.0.2.4")


async def test_a_taken_gateway_port_fails_naming_the_kept_port(tmp_path: Path) -> None:
    """Agents cannot learn a new gateway endpoint, so a taken one is an error, not a silent move."""
    settings = controller_settings(tmp_path)
    app = ControllerApp(settings)
    await app.start()
    port = int(app.gateway_address.rpartition(":")[2])
    await app.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        second = ControllerApp(settings)
        try:
            with pytest.raises(ListenError, match=rf"{port}.*{LISTEN_FILE}.*gateway_listen"):
                await second.start()
        finally:
            await second.stop()


async def test_an_away_controller_costs_one_warning_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = controller_settings(tmp_path)
    async with fleet(tmp_path, settings, n=1) as (ctl, sims):
        caplog.set_level(logging.DEBUG, logger="mssp.agent")
        await ctl.op.close()
        await ctl.app.stop()
        await asyncio.sleep(6.0)  # the old agent logged two warnings a second here
        label = sims[0].label
        mine = [r for r in caplog.records if r.name == "mssp.agent" and label in r.getMessage()]
        warnings = [r for r in mine if r.levelno >= logging.WARNING]
        assert len(warnings) <= 1, [r.getMessage() for r in warnings]
        assert len(mine) > len(warnings)  # it kept trying (at debug) all the while
        again = await start_controller(settings, tmp_path)
        ctl.app, ctl.op = again.app, again.op
        await wait_until(lambda: sims[0].agent.nats_connected, within=BACK_WITHIN)


def test_broker_urls_from_the_controller_are_checked() -> None:
    assert brokers.valid_urls(["tls://203.0.113.5:4222", "nats://[2001:db8::1]:4222"]) == [
        "tls://203.0.113.5:4222", "nats://[2001:db8::1]:4222"]
    for bad in ([], ["http://203.0.113.5:4222"], ["tls://203.0.113.5"], ["tls://u:p@203.0.113.5:1"],
                ["tls://203.0.113.5:4222/x"], ["tls://" + "a" * 300 + ":4222"],
                [f"tls://203.0.113.{i}:4222" for i in range(brokers.MAX_URLS + 1)], ["tls://\n:1"]):
        with pytest.raises(ValueError):
            brokers.valid_urls(bad)


def test_reconnect_back_off_is_capped_and_jittered() -> None:
    waits = [brokers.backoff(n) for n in range(40) for _ in range(20)]
    assert max(waits) <= brokers.RECONNECT_CAP
    late = [brokers.backoff(30) for _ in range(200)]
    assert min(late) >= brokers.RECONNECT_CAP / 2 and len(set(late)) > 100  # spread, not in step


def test_away_log_warns_once_a_minute_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.away")
    away = brokers.AwayLog(logger)
    with caplog.at_level(logging.DEBUG, logger="test.away"):
        started = time.monotonic()
        while time.monotonic() - started < 0.05:
            away.warning("broker away")
        away.warning("pin failed", kind="tls")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["broker away", "pin failed"]
