"""CA rollover against a real controller (embedded nats-server over TLS, SQLite, gRPC on loopback)
and real agents: an agent enrolled under the first CA takes the bundle, renews onto the new CA long
before its certificate's 60-70%, and after the controller restarts past the overlap (server
certificates from the new CA, the old CA dropped) still connects over gRPC and NATS and gets pushes
with no re-enrollment; a certificate from the old CA is refused then; enrollment works before,
during and after the overlap; a rollover is refused while an agent that cannot follow it is enrolled."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from controller.ca_set import NEXT
from controller.simulation import SimulatedAgent, enroll_agent, wait_until
from gateway_agent.catrust import fingerprint, parse_bundle
from gateway_agent.enroll import fetch_pinned_ca, split_token
from gateway_agent.identity import make_nats_user_seed, make_tls_key_and_csr
from mssp.v1 import enrollment_pb2, enrollment_pb2_grpc, gateway_pb2, gateway_pb2_grpc, operator_pb2
from tests.support.fleet import RunningController, controller_settings, start_controller

WAIT = 45.0
OVERLAP = 4  # seconds


def trusted(sim: SimulatedAgent) -> list[str]:
    return [fingerprint(c) for c in parse_bundle(sim.agent.identity.ca_path.read_bytes())]


def issuer_of(path: Path, ca_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    except Exception:
        return False
    return True


async def status_with(ctl: RunningController, key: bytes, cert: bytes, root: bytes) -> grpc.StatusCode:
    """ReportStatus on the gateway listener presenting `cert`: OK, or the code it was refused with."""
    creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)
    async with grpc.aio.secure_channel(ctl.app.gateway_address, creds) as channel:
        try:
            await gateway_pb2_grpc.GatewayServiceStub(channel).ReportStatus(
                gateway_pb2.StatusReport(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def restart(ctl: RunningController) -> None:
    settings = ctl.settings
    await ctl.op.close()
    await ctl.app.stop()
    again = await start_controller(settings, ctl.root)
    ctl.app, ctl.op = again.app, again.op


async def enroll(ctl: RunningController, name: str) -> SimulatedAgent:
    sim = await enroll_agent(ctl.op, "acme", name, ctl.root / "agents" / name, heartbeat_interval=300.0)
    ctl.agents.append(sim)
    await wait_until(lambda: sim.agent.synced.is_set() and sim.agent.nats_connected, within=WAIT)
    return sim


async def test_agent_follows_a_rollover_without_re_enrolling(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path).model_copy(update={"nats_tls": "on"})
    ctl = await start_controller(settings, tmp_path)
    pki = settings.pki_dir
    try:
        await ctl.op.create_tenant("acme")
        sim = await enroll(ctl, "gw0")  # before: under the first CA
        ident = sim.agent.identity
        ca1 = (pki / "ca.crt").read_bytes()
        old_key, old_cert = ident.key_path.read_bytes(), ident.cert_path.read_bytes()
        assert ident.nats_urls[0].startswith("tls://") and trusted(sim) == [fingerprint(parse_bundle(ca1)[0])]
        before = await ctl.op.call("ShowCa", operator_pb2.ShowCaRequest())
        assert not before.HasField("next") and before.gateways_on_old_ca == 0
        assert before.gateways_enrolled == 1

        started = time.time()
        rolled = await ctl.op.call("RolloverCa", operator_pb2.RolloverCaRequest(overlap_seconds=OVERLAP))
        ca1_fp, ca2_fp = rolled.current.fingerprint, rolled.next.fingerprint
        assert ca1_fp == before.current.fingerprint and ca2_fp != ca1_fp and rolled.overlap_ends_ms
        assert rolled.gateways_on_old_ca == 1
        ca2 = (pki / f"{NEXT}.crt").read_bytes()
        with pytest.raises(grpc.aio.AioRpcError) as again:  # one at a time
            await ctl.op.call("RolloverCa", operator_pb2.RolloverCaRequest(overlap_seconds=OVERLAP))
        assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # The announcement makes it ask GetBrokers: it trusts both, and renews onto the new CA at once
        # (its certificate lasts 397 days: the normal schedule would wait for months).
        await wait_until(lambda: set(trusted(sim)) == {ca1_fp, ca2_fp}, within=WAIT)
        await wait_until(lambda: issuer_of(ident.cert_path, ca2), within=WAIT)
        assert (await ctl.op.call("ShowCa", operator_pb2.ShowCaRequest())).gateways_on_old_ca == 0
        # During the overlap the old CA's certificates still pass TLS (this one is replaced: the
        # gateway refuses it, but only after the handshake), and server certificates are the old CA's.
        assert await status_with(ctl, old_key, old_cert, ca1) == grpc.StatusCode.UNAUTHENTICATED
        assert issuer_of(pki / "server.crt", ca1) and issuer_of(pki / "nats-server.crt", ca1)
        await ctl.op.add_ioc("198.51.100.61")
        await wait_until(lambda: "198.51.100.61" in sim.ioc_values(), within=WAIT)

        # A new enrollment during the overlap: the token pins the CA the listener presents (the old);
        # the certificate is the new CA's, and the agent trusts both.
        during = await enroll(ctl, "gw1")
        assert issuer_of(during.agent.identity.cert_path, ca2)
        assert set(trusted(during)) == {ca1_fp, ca2_fp}

        # The first start after the overlap finishes it: everything is the new CA's.
        await asyncio.sleep(max(0.0, started + OVERLAP + 1 - time.time()))
        await restart(ctl)
        after = await ctl.op.call("ShowCa", operator_pb2.ShowCaRequest())
        assert after.current.fingerprint == ca2_fp and after.previous.fingerprint == ca1_fp
        assert not after.HasField("next") and after.finished_at_ms and after.gateways_on_old_ca == 0
        assert (pki / "ca.crt").read_bytes() == ca2 and not (pki / f"{NEXT}.key").exists()
        assert issuer_of(pki / "server.crt", ca2) and issuer_of(pki / "nats-server.crt", ca2)

        # Both agents are back over gRPC and NATS (no resync brings this within the 300 s heartbeat's
        # reach: the push arrives over NATS) and drop the old CA from their trust.
        for agent in (sim, during):
            await wait_until(lambda a=agent: a.agent.nats_connected, within=WAIT)  # type: ignore[misc]
        await ctl.op.add_ioc("198.51.100.62")
        await wait_until(lambda: all("198.51.100.62" in a.ioc_values() for a in (sim, during)), within=WAIT)
        deadline = time.monotonic() + WAIT
        while await sim.agent.report() is None:  # gRPC: the channel's reconnect back-off, then TLS
            assert time.monotonic() < deadline, "the agent's status reports do not reach the controller"
            await asyncio.sleep(0.5)
        sim.agent.request_resync()  # after its next resync (GetBrokers) it trusts the new CA alone
        await wait_until(lambda: trusted(sim) == [ca2_fp], within=WAIT)

        # A client certificate from the old CA is refused in the handshake now.
        assert await status_with(ctl, old_key, old_cert, ca2) == grpc.StatusCode.UNAVAILABLE

        # After: a new enrollment is the new CA's alone.
        late = await enroll(ctl, "gw2")
        assert issuer_of(late.agent.identity.cert_path, ca2) and trusted(late) == [ca2_fp]
    finally:
        for agent in ctl.agents:
            await agent.stop()
        await ctl.op.close()
        await ctl.app.stop()


async def enroll_unaware(ctl: RunningController, name: str) -> None:
    """An enrollment as an agent from before CA rollovers sends it (no ca_rollover_aware)."""
    token, pin = split_token(await ctl.op.add_gateway("acme", name))
    ca_pem = await asyncio.to_thread(fetch_pinned_ca, ctl.op.address, pin)
    _, csr = make_tls_key_and_csr()
    _, nats_public = make_nats_user_seed()
    async with grpc.aio.secure_channel(ctl.op.address, grpc.ssl_channel_credentials(ca_pem)) as channel:
        await enrollment_pb2_grpc.EnrollmentServiceStub(channel).Enroll(enrollment_pb2.EnrollRequest(
            token=token, csr_pem=csr, nats_public_key=nats_public, agent_version="old",
            alliance_aware=True, rotation_aware=True), timeout=15)


async def test_rollover_is_refused_while_an_agent_that_cannot_follow_is_enrolled(
    controller: RunningController,
) -> None:
    op, pki = controller.op, controller.settings.pki_dir
    await op.create_tenant("acme")
    await controller.enroll("acme", "new")
    await enroll_unaware(controller, "old")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await op.call("RolloverCa", operator_pb2.RolloverCaRequest(overlap_seconds=60))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "acme/old" in (refused.value.details() or "") and "acme/new" not in (refused.value.details() or "")
    assert not (pki / f"{NEXT}.crt").exists() and not (pki / "ca-rollover.json").exists()  # nothing changed
    assert not (await op.call("ShowCa", operator_pb2.ShowCaRequest())).HasField("next")

    forced = await op.call("RolloverCa", operator_pb2.RolloverCaRequest(overlap_seconds=60, force=True))
    assert forced.HasField("next") and (pki / f"{NEXT}.crt").exists()
    assert forced.gateways_enrolled == 2 and forced.gateways_on_old_ca == 2
