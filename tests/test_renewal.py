"""Certificate renewal against a real controller, broker and agents, with a 30 s certificate lifetime:
the agent renews at 60-70% of the lifetime with keys it made itself, keeps receiving pushes over NATS with its
new credentials, its old NATS key dies at the broker, a lost answer is retried with the replaced
certificate, a revoked gateway is refused, a crash mid-install is finished on restart, and fleet
status flags a gateway that did not renew."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import threading
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.domain.errors import Conflict, InvalidInput, Unauthenticated
from controller.service import ControllerService
from controller.simulation import SimulatedAgent, wait_until
from controller.store.db import Database
from gateway_agent import cli, renewal
from gateway_agent.identity import AgentIdentity, make_tls_key_and_csr
from mssp.common.creds import parse_creds_file
from mssp.v1 import gateway_pb2, operator_pb2
from tests.support.fleet import RunningController, controller_settings, running_controller
from tests.test_alliance import connect_refused, inbox

LIFETIME = 30  # seconds: renewal 17-20 s after enrollment (60-70% of 33 s, backdated 3 s)
WAIT = 45.0


def serial(identity: AgentIdentity) -> int:
    return x509.load_pem_x509_certificate(identity.cert_path.read_bytes()).serial_number


@pytest.fixture
async def short_lived(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = controller_settings(tmp_path).model_copy(update={"gateway_cert_lifetime_seconds": LIFETIME})
    async with running_controller(settings, tmp_path) as ctl:
        yield ctl


async def gateway(ctl: RunningController, name: str) -> operator_pb2.Gateway:
    reply = await ctl.op.call("GetGateway", operator_pb2.GatewayRef(tenant="acme", name=name))
    return reply


async def test_agent_renews_before_expiry_and_keeps_enforcing(
    short_lived: RunningController, tmp_path: Path
) -> None:
    ctl = short_lived
    await ctl.op.create_tenant("acme")
    sim = await ctl.enroll("acme", "gw0")
    await ctl.enroll("acme", "idle", start=False)  # enrolled, never runs: cannot renew
    ident = sim.agent.identity
    first_serial, first_key = serial(ident), ident.key_path.read_bytes()
    old_creds = tmp_path / "old.creds"
    shutil.copy(ident.creds_path, old_creds)
    before = await gateway(ctl, "gw0")
    assert before.cert_not_after_ms and not before.cert_renewed_at_ms and not before.renewal_overdue

    old_expiry = x509.load_pem_x509_certificate(ident.cert_path.read_bytes()).not_valid_after_utc.timestamp()
    await wait_until(lambda: serial(ident) != first_serial, within=WAIT)
    # The replaced NATS key is revoked at the broker, well before its JWT would have expired.
    urls = ident.nats_urls
    await wait_until_async(lambda: connect_refused(old_creds, urls, inbox(sim)), within=WAIT)
    assert time.time() < old_expiry
    assert ident.key_path.read_bytes() != first_key  # a fresh key, made on the router
    assert not (ident.state_dir / renewal.RENEWAL_FILE).exists()
    after = await gateway(ctl, "gw0")
    assert after.cert_serial == format(serial(ident), "x")
    assert after.cert_renewed_at_ms > 0 and after.cert_not_after_ms > before.cert_not_after_ms

    # Pushes still arrive over NATS, now on the renewed credentials.
    await wait_until(lambda: sim.agent.nats_connected, within=WAIT)
    await ctl.op.add_ioc("203.0.113.9")
    await wait_until(lambda: "203.0.113.9" in sim.ioc_values(), within=WAIT)
    assert parse_creds_file(ident.creds_path.read_text())[1] != parse_creds_file(old_creds.read_text())[1]
    assert not await connect_refused(ident.creds_path, urls, inbox(sim))

    # The gateway that never ran is past three quarters of its certificate's lifetime: flagged.
    await wait_until_async(lambda: overdue(ctl, "idle"), within=WAIT)
    assert not (await gateway(ctl, "gw0")).renewal_overdue
    status = sim.agent.status()["certificate"]
    assert isinstance(status, dict) and status["renewed_at"] and not status["last_error"]


async def synced(ctl: RunningController) -> SimulatedAgent:
    await ctl.op.create_tenant("acme")
    sim = await ctl.enroll("acme", "gw0")
    await asyncio.wait_for(sim.agent.synced.wait(), WAIT)
    return sim


async def overdue(ctl: RunningController, name: str) -> bool:
    return (await gateway(ctl, name)).renewal_overdue


async def wait_until_async(check, within: float) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.3)


async def test_lost_answer_is_retried_with_the_replaced_certificate(
    controller: RunningController, tmp_path: Path
) -> None:
    sim = await synced(controller)
    ident = sim.agent.identity
    saved = tmp_path / "saved"
    saved.mkdir()
    for path in (ident.key_path, ident.cert_path, ident.creds_path):
        shutil.copy(path, saved / path.name)
    await sim.agent.renewer.renew_once()
    renewed_serial = serial(ident)
    # The answer never reached the disk: the router still holds the replaced certificate.
    for path in (ident.key_path, ident.cert_path, ident.creds_path):
        shutil.copy(saved / path.name, path)
    await sim.agent.reopen_channel()
    assert await sim.agent.report() is None  # the replaced certificate may renew, nothing else
    await sim.agent.renewer.renew_once()
    assert serial(ident) != renewed_serial
    assert format(serial(ident), "x") == (await gateway(controller, "gw0")).cert_serial
    assert await sim.agent.report() is not None


async def test_revoked_gateway_cannot_renew(controller: RunningController) -> None:
    sim = await synced(controller)
    ident = sim.agent.identity
    files = (ident.key_path, ident.cert_path, ident.creds_path)
    before = [f.read_bytes() for f in files]
    await controller.op.call("RevokeGateway", operator_pb2.GatewayRef(tenant="acme", name="gw0"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sim.agent.renewer.renew_once()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (caught.value.details() or "")
    assert [f.read_bytes() for f in files] == before


async def test_bad_renewal_request_is_refused_and_changes_nothing(controller: RunningController) -> None:
    sim = await synced(controller)
    stub = sim.agent._stub
    assert stub is not None
    _, csr = make_tls_key_and_csr()
    bad_csr = gateway_pb2.RenewRequest(csr_pem=b"junk", nats_public_key="U" * 56)
    bad_key = gateway_pb2.RenewRequest(csr_pem=csr, nats_public_key="nope")
    for request, why in ((bad_csr, "signing request"), (bad_key, "nkey")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Renew(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert why in (caught.value.details() or "")
    assert not (await gateway(controller, "gw0")).cert_renewed_at_ms


def test_recover_finishes_an_interrupted_install_and_drops_a_torn_one(tmp_path: Path) -> None:
    ident = AgentIdentity(tmp_path, "t", "acme", "g", "gw0", "c:1", "c:2", ["nats://127.0.0.1:1"], "00" * 32)
    for path in (ident.key_path, ident.cert_path, ident.creds_path):
        path.write_text(f"old {path.name}")
    pending = tmp_path / renewal.RENEWAL_FILE
    pending.write_text('{"key": "new key", "cert": "new')  # torn before it was complete
    assert not renewal.recover(ident)
    assert not pending.exists() and ident.key_path.read_text() == "old tls.key"

    seed = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU"
    pending.write_text(json.dumps({"key": "new key", "cert": "new cert", "seed": seed, "jwt": "a.b.c"}))
    ident.key_path.write_text("new key")  # the crash came after the key, before the certificate
    assert renewal.recover(ident)
    assert (ident.key_path.read_text(), ident.cert_path.read_text()) == ("new key", "new cert")
    assert parse_creds_file(ident.creds_path.read_text()) == ("a.b.c", seed.encode())
    assert not pending.exists()
    assert not renewal.recover(ident)  # nothing left to finish


def test_concurrent_renewals_commit_once(db: Database) -> None:
    svc = ControllerService(db)
    svc.create_tenant("acme")
    _, secret, _ = svc.add_gateway("acme", "gw1")
    ticket = svc.redeem_enrollment_token(secret)
    svc.complete_enrollment(ticket.gateway_id, cert_serial="0a", nats_public_key="UOLD", agent_version="1")
    renewal_ticket = svc.renewals.ticket("0a")
    results: list[object] = []
    barrier = threading.Barrier(8)

    def renew(i: int) -> None:
        barrier.wait()
        try:
            results.append(svc.renewals.commit(renewal_ticket, serial=f"b{i}", not_before_ms=1,
                                               not_after_ms=2, nats_public_key=f"UNEW{i}"))
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=renew, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [r for r in results if not isinstance(r, Conflict)]
    assert len(won) == 1 and len(results) == 8
    # The new certificate authenticates; the replaced one may only renew again; a third nothing.
    new_serial = next(g for g in svc.list_gateways("acme")).cert_serial
    assert new_serial.startswith("b")
    assert svc.gateway_identity_by_serial(new_serial) is not None
    assert svc.gateway_identity_by_serial("0a") is None and svc.renewals.ticket("0a").gateway_id
    with pytest.raises(Unauthenticated):
        svc.renewals.ticket("0c")
    svc.revoke_gateway("acme", "gw1")
    assert svc.gateway_identity_by_serial(new_serial) is None
    for serial in (new_serial, "0a"):
        with pytest.raises(Unauthenticated, match="revoked"):
            svc.renewals.ticket(serial)


def test_a_nats_key_another_gateway_holds_is_refused(db: Database) -> None:
    """Public nkeys are no secret: renewing or enrolling with another gateway's would get it revoked."""
    svc = ControllerService(db)
    svc.create_tenant("acme")
    svc.create_tenant("globex")
    ids = {}
    for tenant, serial, key in (("acme", "0a", "UVICTIM"), ("globex", "0b", "UATTACKER")):
        _, secret, _ = svc.add_gateway(tenant, "gw")
        ids[tenant] = svc.redeem_enrollment_token(secret).gateway_id
        svc.complete_enrollment(ids[tenant], cert_serial=serial, nats_public_key=key, agent_version="1")
    ticket = svc.renewals.ticket("0b")
    for stolen in ("UVICTIM", "UATTACKER"):  # another's key, or its own again
        with pytest.raises(InvalidInput, match="already in use"):
            svc.renewals.commit(ticket, serial="0c", not_before_ms=1, not_after_ms=2,
                                nats_public_key=stolen)
    assert svc.gateway_identity_by_serial("0b") is not None  # nothing changed
    renewed = svc.renewals.commit(ticket, serial="0c", not_before_ms=1, not_after_ms=2,
                                  nats_public_key="UNEW")
    assert renewed.replaced_nats_key == "UATTACKER"
    _, secret, _ = svc.add_gateway("globex", "gw2")
    pending = svc.redeem_enrollment_token(secret).gateway_id
    with pytest.raises(InvalidInput, match="already in use"):  # the replaced key stays taken
        svc.complete_enrollment(pending, cert_serial="0d", nats_public_key="UATTACKER", agent_version="1")


async def test_agent_status_shows_certificate_and_signing_keys(
    controller: RunningController, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = await synced(controller)
    capsys.readouterr()
    assert cli.main(["status", "--state-dir", str(sim.agent.identity.state_dir), "-o", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    expires = dt.datetime.fromisoformat(status["certificate_expires"])
    assert 396 < (expires - dt.datetime.now(dt.UTC)).days + 1 <= 397
    assert status["signing_keys"] == sorted(sim.agent.keys.keys) and len(status["signing_keys"]) == 1


def test_renewal_point_is_spread_per_certificate_and_stable(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw")])
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    points = set()
    for serial_number in range(1000, 1000 + 40 * 25, 25):
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(serial_number).not_valid_before(start)
                .not_valid_after(start + dt.timedelta(days=100)).sign(key, hashes.SHA256()))
        path = tmp_path / f"{serial_number}.crt"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        fraction = (renewal.renew_at(path) - start.timestamp()) / (100 * 86400)
        assert 0.6 <= fraction < 0.7 and renewal.renew_at(path) == renewal.renew_at(path)
        points.add(round(fraction, 3))
    assert len(points) == 40  # spread, not one instant for a fleet enrolled together
