"""Acked telemetry survives a crash of the broker's host (issue 7, item 13).

The agent drops a batch from its spool once JetStream acks it, so the broker must have it on disk
by then: every generated nats.conf sets `jetstream { sync_interval: always }` (fsync before the
ack). These tests read the setting back from the running server (VARZ through the system account),
so a config the server ignored or a block it parsed differently would fail them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import nats
import pytest

from controller.config import Settings
from controller.domain.errors import InvalidInput
from controller.nats.auth import NatsIdentity
from controller.nats.embedded import EmbeddedNats
from tests.support.fleet import RunningController
from tests.support.nats import NatsBroker


def _jetstream_block(config: str) -> str:
    return config.split("jetstream: {", 1)[1].split("}", 1)[0]


async def _jetstream_varz(url: str, system_creds: Path) -> dict[str, Any]:
    nc = await nats.connect(servers=[url], user_credentials=str(system_creds), allow_reconnect=False,
                            connect_timeout=3)
    try:
        reply = await nc.request("$SYS.REQ.SERVER.PING.VARZ", b"", timeout=5)
    finally:
        await nc.close()
    return json.loads(reply.data)["data"]["jetstream"]["config"]


def test_generated_config_syncs_every_write(tmp_path: Path) -> None:
    identity = NatsIdentity.load_or_create(tmp_path / "keys")
    assert "sync_interval: always" in _jetstream_block(identity.server_config(host="127.0.0.1", port=4222))
    relaxed = identity.server_config(host="127.0.0.1", port=4222, sync_interval=None)
    assert "sync_interval" not in relaxed  # the bench's baseline: the server's default
    assert "sync_interval: 10s" in identity.server_config(host="127.0.0.1", port=4222, sync_interval="10s")
    for bad in ("sometimes", "10 s", "always\nhost: 0.0.0.0", ""):
        with pytest.raises(InvalidInput):
            identity.server_config(host="127.0.0.1", port=4222, sync_interval=bad)
    assert Settings().jetstream_sync_interval == "always"
    assert Settings(nats_sync_interval="default").jetstream_sync_interval is None
    with pytest.raises(ValueError):
        Settings(nats_sync_interval="always\n")


async def test_embedded_broker_runs_with_sync_always(nats_broker: NatsBroker) -> None:
    creds = nats_broker.write_creds("system", nats_broker.identity.system_creds())
    config = await _jetstream_varz(nats_broker.url, creds)
    assert config.get("sync_always") is True


async def test_server_default_is_not_sync_always() -> None:
    """The control: without the option the same server does not fsync each write (what main did)."""
    directory = Path(tempfile.mkdtemp(prefix="mssp-nats-sync-"))
    try:
        identity = NatsIdentity.load_or_create(directory / "keys")
        async with EmbeddedNats(identity, directory / "server", sync_interval=None) as broker:
            creds = directory / "system.creds"
            creds.write_text(identity.system_creds())
            config = await _jetstream_varz(broker.url, creds)
        assert not config.get("sync_always")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_controller_broker_syncs_every_write(controller: RunningController) -> None:
    embedded = controller.app.embedded_nats
    assert embedded is not None
    assert "sync_interval: always" in _jetstream_block(embedded.config_path.read_text())
    creds = controller.root / "system.creds"
    creds.write_text(controller.app.identity.system_creds())
    config = await _jetstream_varz(embedded.url, creds)
    assert config.get("sync_always") is True
