"""`msspctl nats config` and the controller agree on TLS (review finding 8). Real nats-server run
from the config `msspctl nats config` prints, real controller.

`nats config` decides `auto` by the broker's listen address and names (here a name off the box, so
TLS first); the controller only sees MSSP_NATS_URL=nats://127.0.0.1, which alone would mean clear
text. The controller asks the broker: TLS under our CA -> it connects with tls:// (auto), or it
refuses to start with a message saying why (off).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.app import ControllerApp
from controller.config import Settings
from controller.domain.errors import InvalidInput
from controller.nats.embedded import nats_server_binary
from controller.simulation import wait_until
from tests.support.fleet import controller_settings, start_controller


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ExternalBroker:
    conf: Path
    port: int
    proc: asyncio.subprocess.Process | None = None

    @property
    def plain_url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            nats_server_binary(), "-c", str(self.conf),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

        async def listening() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            writer.close()
            return True

        for _ in range(200):
            if await listening():
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)
        self.proc = None


def _nats_config(tmp_path: Path, port: int) -> str:
    """A broker configured by `msspctl nats config` (auto TLS) for this controller's data dir."""
    settings = controller_settings(tmp_path)
    env = {**os.environ, "MSSP_DATA_DIR": str(settings.data_dir)}
    env.pop("MSSP_NATS_TLS", None)
    msspctl = Path(sys.executable).parent / "msspctl"
    return subprocess.run(
        [str(msspctl), "nats", "config", "--host", "127.0.0.1", "--port", str(port),
         "--tls-host", "nats.example", "--store-dir", str(tmp_path / "js"),
         "--resolver-dir", str(tmp_path / "resolver"), "--tls-dir", str(tmp_path / "nats-tls")],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout


@pytest.fixture
async def external(tmp_path: Path) -> AsyncIterator[ExternalBroker]:
    """A broker configured by `msspctl nats config` (auto TLS) for this controller's data dir."""
    port = _free_port()
    out = await asyncio.to_thread(_nats_config, tmp_path, port)
    assert "handshake_first: true" in out  # auto turned TLS on for the broker
    conf = tmp_path / "nats.conf"
    conf.write_text(out)
    broker = ExternalBroker(conf=conf, port=port)
    try:
        yield broker
    finally:
        await broker.stop()


def _settings(tmp_path: Path, broker: ExternalBroker, mode: str) -> Settings:
    return controller_settings(tmp_path).model_copy(
        update={"nats_url": broker.plain_url, "nats_tls": mode})


async def test_auto_controller_talks_tls_to_a_tls_first_broker(
    tmp_path: Path, external: ExternalBroker
) -> None:
    await external.start()
    ctl = await asyncio.wait_for(start_controller(_settings(tmp_path, external, "auto"), tmp_path), 60)
    try:
        assert ctl.app.nats_urls == [external.plain_url.replace("nats://", "tls://", 1)]
        assert ctl.app.nc is not None and ctl.app.nc.connected_url is not None
        assert ctl.app.nc.connected_url.scheme == "tls"
        await ctl.app.nc.flush()
        await ctl.op.create_tenant("acme")  # the API (and its publisher) is up
    finally:
        await ctl.op.close()
        await ctl.app.stop()


async def test_off_controller_refuses_a_tls_first_broker_with_a_reason(
    tmp_path: Path, external: ExternalBroker
) -> None:
    await external.start()
    app = ControllerApp(_settings(tmp_path, external, "off"))
    try:
        with pytest.raises(InvalidInput, match="speaks TLS first"):
            await asyncio.wait_for(app.start(), 60)
    finally:
        await app.stop()


async def test_broker_that_comes_up_after_the_controller_still_gets_tls(
    tmp_path: Path, external: ExternalBroker
) -> None:
    """At start the broker is down, so there is nothing to ask; the controller's connection moves
    to tls:// once the broker is up and turns out to speak TLS first."""
    app = ControllerApp(_settings(tmp_path, external, "auto"))
    starting = asyncio.create_task(app.start())
    try:
        await wait_until(lambda: (Path(tmp_path) / "controller" / "nats" / "controller.creds").exists()
                         or starting.done(), within=60)
        await asyncio.sleep(1)
        assert not starting.done()
        await external.start()
        await asyncio.wait_for(starting, 90)
        assert app.nc is not None and app.nc.connected_url is not None
        assert app.nc.connected_url.scheme == "tls"
        assert all(u.startswith("tls://") for u in app.nats_urls)
        assert app.nats_connect_kwargs()["tls_handshake_first"] is True  # later connections too
    finally:
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await app.stop()
