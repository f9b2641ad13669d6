"""Revocation reaches a REAL broker and stays there: concurrent revokes, a broker that is down when the
operator revokes, a controller restarted against an external broker that missed a revocation, and
gateway JWTs that expire with the gateway's certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats
import pytest
from cryptography import x509

from controller.nats.auth import (
    GATEWAY_JWT_LIFETIME,
    NatsIdentity,
    creds_file_text,
    decode_jwt_claims,
    new_user_seed,
    public_key_of,
)
from controller.nats.embedded import EmbeddedNats
from controller.nats.revocation import RevocationSync, broker_revocations, write_state
from controller.service import ControllerService
from controller.store.db import Database
from controller.store.revoked import revoked_nats_keys
from gateway_agent.enroll import enroll
from mssp.v1 import operator_pb2, operator_pb2_grpc
from tests.support.fleet import RunningController, controller_settings, start_controller
from tests.support.waiting import eventually

REFUSED = r"(?i)authorization violation|revoked|expired"
WAIT = 30.0


@dataclass
class Gw:
    name: str
    public: str
    creds: Path


def enrolled_gateways(service: ControllerService, identity: NatsIdentity, tenant: str, names: list[str],
                      creds_dir: Path) -> list[Gw]:
    """Gateways as enrollment leaves them (token spent, NATS key stored), with creds files to connect."""
    out = []
    for name in names:
        _, secret, _ = service.add_gateway(tenant, name)
        ticket = service.redeem_enrollment_token(secret)
        seed = new_user_seed()
        public = public_key_of(seed)
        service.complete_enrollment(ticket.gateway_id, cert_serial=f"{len(out)}-{name}-{time.time_ns()}",
                                    nats_public_key=public, agent_version="test")
        creds = creds_dir / f"{name}.creds"
        creds.write_text(creds_file_text(identity.gateway_user_jwt(public, ticket.tenant_id,
                                                                   ticket.gateway_id), seed))
        out.append(Gw(name, public, creds))
    return out


async def refused(url: str, gw: Gw) -> bool:
    try:
        nc = await nats.connect(servers=[url], user_credentials=str(gw.creds), allow_reconnect=False,
                                connect_timeout=2)
    except Exception as exc:
        return re.search(REFUSED, str(exc)) is not None
    await nc.close()
    return False


async def held_by_broker(identity: NatsIdentity, url: str, creds_dir: Path) -> dict[str, int]:
    path = creds_dir / "system-probe.creds"
    path.write_text(identity.system_creds())
    nc = await nats.connect(servers=[url], user_credentials=str(path), allow_reconnect=False,
                            connect_timeout=2)
    try:
        return await broker_revocations(nc, identity.account_public_key)
    finally:
        await nc.close()


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[RunningController]:
    ctl = await start_controller(controller_settings(tmp_path), tmp_path)
    try:
        yield ctl
    finally:
        await ctl.op.close()
        await ctl.app.stop()


async def test_concurrent_revokes_from_threads_all_reach_the_broker(
    controller: RunningController, tmp_path: Path
) -> None:
    app = controller.app
    assert app.service is not None
    await controller.op.create_tenant("acme")
    names = [f"gw{i}" for i in range(8)]
    gws = await asyncio.to_thread(enrolled_gateways, app.service, app.identity, "acme", names, tmp_path)
    url = app.nats_urls[0]
    assert not any([await refused(url, gw) for gw in gws])
    token = app.settings.operator_token_file.read_text().strip()
    ca_pem = (app.settings.pki_dir / "ca.crt").read_bytes()

    def revoke(name: str) -> None:  # one channel per thread: real concurrent RPCs
        with grpc.secure_channel(app.grpc_address, grpc.ssl_channel_credentials(ca_pem)) as channel:
            operator_pb2_grpc.OperatorServiceStub(channel).RevokeGateway(
                operator_pb2.GatewayRef(tenant="acme", name=name),
                metadata=(("authorization", f"Bearer {token}"),), timeout=60,
            )

    # Threads of our own: the in-process controller shares this loop and its default executor.
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        await asyncio.gather(*(loop.run_in_executor(pool, revoke, name) for name in names))  # no raise

    held = await held_by_broker(app.identity, url, tmp_path)
    assert {gw.public for gw in gws} <= set(held)
    for gw in gws:
        assert await refused(url, gw), gw.name


async def test_revoke_while_the_broker_is_down_lands_when_it_returns(
    controller: RunningController, tmp_path: Path
) -> None:
    app = controller.app
    assert app.service is not None and app.embedded_nats is not None and app.revocations is not None
    app.revocations.max_backoff = 1.0
    await controller.op.create_tenant("acme")
    gw, keep = await asyncio.to_thread(enrolled_gateways, app.service, app.identity, "acme",
                                       ["gone", "kept"], tmp_path)
    url = app.nats_urls[0]
    await app.embedded_nats.kill()
    # The revoke is committed (gRPC refuses the gateway at once) although the broker is unreachable.
    await controller.op.call("RevokeGateway", operator_pb2.GatewayRef(tenant="acme", name="gone"))
    assert app.revocations.stats.failures >= 1
    # Same port and config as before (the preload does not know the revocation): only a re-push helps.
    await app.embedded_nats.start()
    await eventually(lambda: refused(url, gw))
    assert not await refused(url, keep)
    assert gw.public in await held_by_broker(app.identity, url, tmp_path)


async def test_restarted_controller_pushes_what_an_external_broker_missed(tmp_path: Path) -> None:
    """Controller 1 revokes while the external broker is down, then stops; the broker comes back
    without the revocation; controller 2 starts against it and brings it up to date."""
    settings = controller_settings(tmp_path)
    identity = NatsIdentity.load_or_create(settings.nats_dir)
    broker = EmbeddedNats(identity, tmp_path / "external-broker")
    await broker.start()
    try:
        settings = settings.model_copy(update={"nats_url": broker.url})
        ctl = await start_controller(settings, tmp_path)
        try:
            assert ctl.app.service is not None and ctl.app.revocations is not None
            ctl.app.revocations.max_backoff = 1.0
            await ctl.op.create_tenant("acme")
            (gw,) = await asyncio.to_thread(enrolled_gateways, ctl.app.service, ctl.app.identity,
                                            "acme", ["gone"], tmp_path)
            await broker.kill()
            await ctl.op.call("RevokeGateway", operator_pb2.GatewayRef(tenant="acme", name="gone"))
        finally:
            await ctl.op.close()
            await ctl.app.stop()
        await broker.start()
        assert not await refused(broker.url, gw)  # the broker never heard of it

        again = await start_controller(settings, tmp_path)
        try:
            await eventually(lambda: refused(broker.url, gw))
        finally:
            await again.op.close()
            await again.app.stop()
    finally:
        await broker.stop()


async def test_sync_serialises_and_retries_until_the_broker_confirms(tmp_path: Path) -> None:
    """RevocationSync on its own: many concurrent pushes, a unique temp file each time, nothing lost;
    a broker that is down gets the list pushed with backoff once it is back."""
    identity = NatsIdentity.load_or_create(tmp_path / "keys")
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.upgrade()
    svc = ControllerService(db)
    svc.create_tenant("acme")
    gws = enrolled_gateways(svc, identity, "acme", [f"g{i}" for i in range(6)], tmp_path)
    broker = EmbeddedNats(identity, tmp_path / "broker")
    await broker.start()
    creds = tmp_path / "system.creds"
    creds.write_text(identity.system_creds())
    sync = RevocationSync(identity, lambda: revoked_nats_keys(db), lambda: {"servers": [broker.url]}, creds,
                          state_file=tmp_path / "state" / "revocations.json", period=3600, max_backoff=0.5)
    try:
        async def revoke(gw: Gw) -> bool:
            await asyncio.to_thread(svc.revoke_gateway, "acme", gw.name)
            return await sync.revoked()

        assert all(await asyncio.gather(*(revoke(gw) for gw in gws)))
        assert {gw.public for gw in gws} <= set(await held_by_broker(identity, broker.url, tmp_path))
        assert [p.name for p in (tmp_path / "state").iterdir()] == ["revocations.json"]  # no temp left

        await sync.start()
        url = broker.url
        await broker.kill()
        (late,) = enrolled_gateways(svc, identity, "acme", ["late"], tmp_path)
        svc.revoke_gateway("acme", "late")
        assert not await sync.revoked()  # not confirmed: the loop takes over
        # A controller starting while the broker is down does not hang on its first connect either.
        fresh = RevocationSync(identity, lambda: revoked_nats_keys(db), lambda: {"servers": [url]}, creds,
                               state_file=tmp_path / "fresh" / "revocations.json")
        assert not await fresh.reconcile()
        await fresh.stop()
        await broker.start()
        await eventually(lambda: refused(broker.url, late))
        assert sync.stats.failures >= 1
    finally:
        await sync.stop()
        await broker.stop()
        db.dispose()


def test_state_file_writes_never_share_a_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "revocations.json"
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(50):
                write_state(path, {f"U{i}": j})
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["revocations.json"]


async def test_gateway_jwt_expires_with_its_certificate(
    controller: RunningController, tmp_path: Path
) -> None:
    await controller.op.create_tenant("acme")
    token = await controller.op.add_gateway("acme", "gw1")
    identity = await enroll(controller.op.address, token, tmp_path / "agent")
    jwt = identity.creds_path.read_text().split("-----BEGIN NATS USER JWT-----")[1].split("---")[0].strip()
    claims = decode_jwt_claims(jwt)
    cert = x509.load_pem_x509_certificate(identity.cert_path.read_bytes())
    assert "exp" in claims
    assert abs(claims["exp"] - cert.not_valid_after_utc.timestamp()) < 600
    assert claims["exp"] - claims["iat"] == pytest.approx(GATEWAY_JWT_LIFETIME.total_seconds(), abs=5)


async def test_broker_refuses_an_expired_gateway_jwt(tmp_path: Path) -> None:
    identity = NatsIdentity.load_or_create(tmp_path / "keys")
    seed = new_user_seed()
    creds = tmp_path / "old.creds"
    past = int((dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).timestamp())
    creds.write_text(creds_file_text(identity.gateway_user_jwt(public_key_of(seed), "t1", "g1",
                                                               expires_at=past), seed))
    async with EmbeddedNats(identity, tmp_path / "broker") as srv:
        with pytest.raises(Exception, match=REFUSED):
            await nats.connect(servers=[srv.url], user_credentials=str(creds), allow_reconnect=False,
                               connect_timeout=2)

