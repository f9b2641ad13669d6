"""Agents enrolled before the broker did TLS (review finding 4): their identity holds nats:// URLs.

A TLS-first broker never answers them in clear text, so they move to tls:// with the CA pinned at
enrollment, on their first connect and on a reconnect after the broker switched. Real nats-server,
real enrollment. The move is one way: a plaintext broker keeps plain clients plain, and nothing
turns tls:// into nats://.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from controller.nats.auth import NatsIdentity
from controller.nats.embedded import EmbeddedNats
from controller.nats.tls import issue_broker_tls
from controller.pki import CertificateAuthority
from controller.simulation import enroll_agent, wait_until
from gateway_agent import nats_connect
from mssp.common.natstls import speaks_pinned_tls, with_tls_scheme
from tests.support.fleet import controller_settings, start_controller


async def _ignore(exc: Exception) -> None:
    pass


class _PoolRecorder:
    """The two things TlsUpgrade changes on a nats-py client, recorded."""

    def __init__(self) -> None:
        self.is_closed = False
        self.options: dict[str, object] = {}
        self.pool: list[str] | None = None

    def set_server_pool(self, servers: list[str]) -> None:
        self.pool = servers


async def test_agent_with_stored_nats_urls_reaches_a_tls_first_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = controller_settings(tmp_path).model_copy(update={"nats_tls": "on"})
    ctl = await start_controller(settings, tmp_path)
    sim = None
    try:
        await ctl.op.create_tenant("acme")
        sim = await enroll_agent(ctl.op, "acme", "gw1", tmp_path / "agent", start=False,
                                 heartbeat_interval=300)
        ident = sim.agent.identity
        # What an agent enrolled before the TLS change has on disk.
        ident.nats_urls = [u.replace("tls://", "nats://", 1) for u in ident.nats_urls]
        assert all(u.startswith("nats://") for u in ident.nats_urls)
        caplog.set_level(logging.WARNING)
        sim.start()
        await wait_until(lambda: sim.agent.nats_connected and sim.agent.synced.is_set(), within=40)
        nc = sim.agent._nc
        assert nc is not None and nc.connected_url is not None
        assert nc.connected_url.scheme == "tls"
        assert "speaks TLS first" in caplog.text
        await ctl.op.add_ioc("198.51.100.78")
        await wait_until(lambda: "198.51.100.78" in sim.ioc_values(), within=30)
    finally:
        if sim is not None:
            await sim.stop()
        await ctl.op.close()
        await ctl.app.stop()


@pytest.fixture
async def broker_dir() -> AsyncIterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="mssp-nats-upgrade-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_connected_plain_client_moves_to_tls_when_the_broker_restarts_tls_first(
    broker_dir: Path,
) -> None:
    """The common case in the field: the agent is connected in clear text when the controller (and
    its broker) restart with TLS on; its reconnects upgrade, keeping the same client."""
    ca = CertificateAuthority.load_or_create(broker_dir)
    (broker_dir / "agent-ca.crt").write_bytes(ca.cert_pem)
    identity = NatsIdentity.load_or_create(broker_dir / "keys")
    creds = broker_dir / "controller.creds"
    creds.write_text(identity.controller_creds())
    plain = EmbeddedNats(identity, broker_dir / "server", host="127.0.0.1")
    tls_broker: EmbeddedNats | None = None
    nc: NatsClient | None = None
    try:
        url = await plain.start()
        assert url.startswith("nats://")
        nc = await nats_connect.connect([url], broker_dir / "agent-ca.crt", error_cb=_ignore,
                                        user_credentials=str(creds), max_reconnect_attempts=-1,
                                        reconnect_time_wait=0.2, connect_timeout=2)
        await nc.flush()
        assert nc.connected_url is not None and nc.connected_url.scheme == "nats"  # no needless upgrade
        await plain.stop()
        tls = issue_broker_tls(ca, broker_dir / "pki", ["127.0.0.1"])
        tls_broker = EmbeddedNats(identity, broker_dir / "server", host="127.0.0.1", port=plain.port,
                                  tls=tls)
        assert (await tls_broker.start()).startswith("tls://")
        await wait_until(lambda: nc is not None and nc.is_connected and nc.connected_url is not None
                         and nc.connected_url.scheme == "tls", within=40)
        await nc.flush()
    finally:
        if nc is not None:
            await nc.close()
        if tls_broker is not None:
            await tls_broker.stop()
        await plain.stop()


async def test_probe_only_says_yes_to_our_tls_first_broker(broker_dir: Path) -> None:
    """The upgrade trigger: a plaintext broker, or a TLS broker under another CA, is not ours."""
    ca = CertificateAuthority.load_or_create(broker_dir / "ca")
    other = CertificateAuthority.load_or_create(broker_dir / "other")
    identity = NatsIdentity.load_or_create(broker_dir / "keys")
    plain = EmbeddedNats(identity, broker_dir / "plain")
    tls = EmbeddedNats(identity, broker_dir / "tls",
                       tls=issue_broker_tls(ca, broker_dir / "pki", ["127.0.0.1"]))
    try:
        plain_url = await plain.start()
        tls_url = await tls.start()
        assert not await speaks_pinned_tls(plain_url, ca.cert_pem)
        assert await speaks_pinned_tls(tls_url, ca.cert_pem)
        assert await speaks_pinned_tls(tls_url.replace("tls://", "nats://", 1), ca.cert_pem)
        assert not await speaks_pinned_tls(tls_url, other.cert_pem)
        upgrade = nats_connect.TlsUpgrade([with_tls_scheme(plain_url)], ca.cert_pem)
        assert not upgrade.applies()  # tls:// is never touched, so never turned into nats://
        assert not nats_connect.TlsUpgrade([plain_url], None).applies()  # no pinned CA, no upgrade
        client = _PoolRecorder()
        stored = nats_connect.TlsUpgrade([tls_url.replace("tls://", "nats://", 1)], ca.cert_pem)
        await stored.on_error(client, ConnectionRefusedError())  # nothing listens: no probe, no move
        assert not stored.upgraded and client.pool is None
        await stored.on_error(client, TimeoutError())  # no INFO in time: the probe finds our TLS broker
        assert stored.upgraded and client.pool == [tls_url]
    finally:
        await tls.stop()
        await plain.stop()
