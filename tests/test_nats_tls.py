"""NATS over TLS with the controller's CA (issue 7, item 12): real nats-server, real enrollment.

The broker gets a certificate from the controller's CA, agents pin the CA they got at enrollment,
and the broker speaks TLS first, so a client without TLS or trusting another CA gets nowhere.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from cryptography import x509
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from controller.config import Settings
from controller.domain.errors import InvalidInput
from controller.nats.auth import NatsIdentity
from controller.nats.embedded import EmbeddedNats
from controller.nats.tls import controller_tls, issue_broker_tls, tls_wanted
from controller.pki import CertificateAuthority
from controller.simulation import enroll_agent, wait_until
from mssp.common.channels import channel_subject
from mssp.common.natstls import connect_options, pinned_options
from mssp.v1 import operator_pb2
from tests.support.fleet import controller_settings, start_controller

REFUSED = (OSError, TimeoutError, nats.errors.Error)


@dataclass
class TlsBroker:
    ca: CertificateAuthority
    identity: NatsIdentity
    embedded: EmbeddedNats
    directory: Path

    def creds(self) -> Path:
        path = self.directory / "controller.creds"
        path.write_text(self.identity.controller_creds())
        return path


@pytest.fixture
async def tls_broker() -> AsyncIterator[TlsBroker]:
    directory = Path(tempfile.mkdtemp(prefix="mssp-nats-tls-"))
    try:
        ca = CertificateAuthority.load_or_create(directory)
        identity = NatsIdentity.load_or_create(directory / "keys")
        tls = issue_broker_tls(ca, directory / "pki", ["localhost", "127.0.0.1"])
        embedded = EmbeddedNats(identity, directory / "server", tls=tls)
        try:
            await embedded.start()
            yield TlsBroker(ca=ca, identity=identity, embedded=embedded, directory=directory)
        finally:
            await embedded.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _connect(urls: list[str], creds: Path, **options: object) -> NatsClient:
    return await nats.connect(servers=urls, user_credentials=str(creds), allow_reconnect=False,
                              connect_timeout=3, **options)  # type: ignore[arg-type]


async def test_enrolled_agent_connects_over_tls_and_gets_pushes(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path).model_copy(update={"nats_tls": "on"})
    ctl = await start_controller(settings, tmp_path)
    sim = None
    nc: NatsClient | None = None
    try:
        assert ctl.app.nats_urls[0].startswith("tls://")
        assert "tls: {" in ctl.app.embedded_nats.config_path.read_text()  # type: ignore[union-attr]
        await ctl.op.create_tenant("acme")
        sim = await enroll_agent(ctl.op, "acme", "gw1", tmp_path / "agent", heartbeat_interval=300)
        ident = sim.agent.identity
        assert ident.nats_urls and all(u.startswith("tls://") for u in ident.nats_urls)
        assert ident.ca_path.read_bytes() == (settings.pki_dir / "ca.crt").read_bytes()
        await wait_until(lambda: sim.agent.nats_connected and sim.agent.synced.is_set(), within=30)

        # A second client exactly as the agent connects (same options, same pinned CA) sees the push
        # on the wire: the agent's IOC arrives over NATS, not only by a resync.
        servers, tls = pinned_options(ident.nats_urls, ident.ca_path)
        received: list[bytes] = []

        async def collect(msg: Msg) -> None:
            received.append(msg.data)

        nc = await _connect(servers, ident.creds_path, inbox_prefix=f"_INBOX_{ident.gateway_id}", **tls)
        await nc.subscribe(channel_subject("global"), cb=collect)
        await nc.flush()
        await ctl.op.add_ioc("198.51.100.77")
        await wait_until(lambda: "198.51.100.77" in sim.ioc_values(), within=30)
        await wait_until(lambda: bool(received), within=30)
        assert sim.agent.nats_connected
        # Revocation reaches the broker over the same TLS (the system-account connection verifies
        # too): the broker drops the gateway's session.
        await ctl.op.call("RevokeGateway", operator_pb2.GatewayRef(tenant="acme", name="gw1"))
        await wait_until(lambda: not sim.agent.nats_connected, within=30)
    finally:
        if nc is not None:
            await nc.close()
        if sim is not None:
            await sim.stop()
        await ctl.op.close()
        await ctl.app.stop()


async def test_agent_refuses_a_broker_outside_its_pinned_ca(
    tls_broker: TlsBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent's own connect path: a broker whose certificate chains to another CA (here the
    fixture's, not the controller's the agent enrolled with) never gets a session."""
    settings = controller_settings(tmp_path).model_copy(update={"nats_tls": "on"})
    ctl = await start_controller(settings, tmp_path)
    sim = None
    try:
        await ctl.op.create_tenant("acme")
        sim = await enroll_agent(ctl.op, "acme", "gw1", tmp_path / "agent", start=False)
        sim.agent.identity.nats_urls = [tls_broker.embedded.url]  # a broker in the middle
        caplog.set_level("WARNING", logger="mssp.agent")
        sim.start()
        await wait_until(lambda: "certificate verify failed" in caplog.text.lower(), within=30)
        await wait_until(sim.agent.synced.is_set, within=30)  # gRPC to the real controller works
        assert not sim.agent.nats_connected
    finally:
        if sim is not None:
            await sim.stop()
        await ctl.op.close()
        await ctl.app.stop()


async def test_connection_without_tls_is_refused(tls_broker: TlsBroker) -> None:
    url = tls_broker.embedded.url
    assert url.startswith("tls://")
    plain = url.replace("tls://", "nats://", 1)
    with pytest.raises(REFUSED):
        nc = await _connect([plain], tls_broker.creds())
        await nc.close()
    # The same client with the pinned CA gets in (so the refusal above is about TLS, not creds).
    servers, tls = connect_options([url], tls_broker.ca.cert_pem)
    nc = await _connect(servers, tls_broker.creds(), **tls)
    await nc.flush()
    await nc.close()


async def test_client_pinning_another_ca_is_refused(tls_broker: TlsBroker, tmp_path: Path) -> None:
    other = CertificateAuthority.load_or_create(tmp_path / "other-ca")
    servers, tls = connect_options([tls_broker.embedded.url], other.cert_pem)
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    with pytest.raises(REFUSED):
        nc = await _connect(servers, tls_broker.creds(), error_cb=on_error, **tls)
        await nc.close()
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in errors), errors


async def test_client_checks_the_broker_name(tls_broker: TlsBroker) -> None:
    """Chaining to the CA is not enough: the certificate must name the host the client dialled."""
    servers, tls = connect_options([tls_broker.embedded.url], tls_broker.ca.cert_pem)
    with pytest.raises(REFUSED):
        nc = await _connect(servers, tls_broker.creds(), tls_hostname="evil.example", **tls)
        await nc.close()


async def test_mixed_url_list_never_falls_back_to_clear(tls_broker: TlsBroker) -> None:
    url = tls_broker.embedded.url
    servers, tls = connect_options([url.replace("tls://", "nats://", 1), url], tls_broker.ca.cert_pem)
    assert all(s.startswith("tls://") for s in servers) and tls["tls_handshake_first"] is True
    with pytest.raises(ValueError):
        connect_options([url], None)  # tls:// without a CA to pin is a configuration error


def test_tls_is_on_by_default_off_loopback(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "pki")
    assert not tls_wanted("auto", ["127.0.0.1", "::1", "localhost"])
    assert tls_wanted("auto", ["0.0.0.0"]) and tls_wanted("auto", ["::"]) and tls_wanted("auto", ["nats"])
    assert tls_wanted("on", ["127.0.0.1"]) and not tls_wanted("off", ["203.0.113.5"])

    def decide(**kw: object) -> tuple[bool, list[str], list[str]]:
        s = Settings(data_dir=tmp_path / "data", **kw)  # type: ignore[arg-type]
        client, broker = controller_tls(s, ca)
        if broker is None:
            return client.enabled, [], client.urls(s.nats_urls)
        cert = x509.load_pem_x509_certificate(broker.cert_file.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(v) for v in san.get_values_for_type(x509.DNSName)]
        names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
        return client.enabled, names, client.urls(s.nats_urls)

    assert decide(nats_listen="127.0.0.1:0")[0] is False
    on, names, _ = decide(nats_listen="0.0.0.0:4222", advertise_host="ctl.example",
                          nats_cert_hosts=["nats.example"])
    assert on and {"127.0.0.1", "ctl.example", "nats.example"} <= set(names)
    on, names, _ = decide(nats_listen="192.0.2.10:4222")
    assert on and "192.0.2.10" in names
    on, names, _ = decide(nats_listen="127.0.0.1:0", agent_nats_url="nats://198.51.100.10:4222")
    assert on and "198.51.100.10" in names  # agents reach it from off the box (a forward, a proxy)
    assert decide(nats_listen="0.0.0.0:4222", nats_tls="off")[0] is False
    assert decide(nats_url="nats://nats:4222") == (True, [], ["tls://nats:4222"])
    assert decide(nats_url="nats://127.0.0.1:4222") == (False, [], ["nats://127.0.0.1:4222"])
    with pytest.raises(InvalidInput):
        decide(nats_url="tls://nats:4222", nats_tls="off")


async def test_agent_urls_and_controller_connection_use_tls(tmp_path: Path) -> None:
    """agent_nats_url as configured (nats://) is handed to agents as tls:// once TLS is on."""
    settings = controller_settings(tmp_path).model_copy(update={
        "nats_tls": "on", "agent_nats_url": "nats://127.0.0.1:4999",
    })
    ctl = await start_controller(settings, tmp_path)
    try:
        assert ctl.app._agent_nats_urls() == ["tls://127.0.0.1:4999"]
        nc = ctl.app.nc
        assert nc is not None and nc.is_connected
        assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
        await asyncio.wait_for(nc.flush(), 5)
    finally:
        await ctl.op.close()
        await ctl.app.stop()
