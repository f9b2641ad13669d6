"""Enrollment tokens and gateway identity over real gRPC: every refusal is clear and changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from controller.pki import CertificateAuthority
from controller.store.models import Gateway
from gateway_agent.enroll import EnrollError, enroll
from gateway_agent.identity import make_tls_key_and_csr
from mssp.common.text import clean_line, has_unsafe
from mssp.v1 import gateway_pb2, gateway_pb2_grpc, operator_pb2, operator_pb2_grpc
from tests.support.fleet import RunningController


async def gateway_call(ctl: RunningController, creds: grpc.ChannelCredentials) -> gateway_pb2.StatusAck:
    async with grpc.aio.secure_channel(ctl.app.gateway_address, creds) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        return await stub.ReportStatus(gateway_pb2.StatusReport(), timeout=5)


async def test_token_is_single_use(controller: RunningController, tmp_path: Path) -> None:
    await controller.op.create_tenant("acme")
    token = await controller.op.add_gateway("acme", "gw0")
    identity = await enroll(controller.op.address, token, tmp_path / "a")
    assert identity.label == "acme/gw0"
    assert oct((tmp_path / "a" / "tls.key").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "a" / "nats.creds").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(EnrollError, match="already used"):
        await enroll(controller.op.address, token, tmp_path / "b")
    assert not (tmp_path / "b" / "identity.json").exists()
    with pytest.raises(EnrollError, match="already enrolled"):
        await enroll(controller.op.address, token, tmp_path / "a")


async def test_unknown_expired_and_malformed_tokens(controller: RunningController, tmp_path: Path) -> None:
    await controller.op.create_tenant("acme")
    token = await controller.op.add_gateway("acme", "gw0")
    secret, _, pin = token.rpartition(".")
    forged = "mssp_enr_" + "A" * 43 + "." + pin
    with pytest.raises(EnrollError, match="unknown enrollment token"):
        await enroll(controller.op.address, forged, tmp_path / "x")
    with pytest.raises(EnrollError, match="malformed enrollment token"):
        await enroll(controller.op.address, secret, tmp_path / "x")
    with pytest.raises(EnrollError, match="pinned"):
        await enroll(controller.op.address, secret + "." + "0" * 64, tmp_path / "x")
    reply = await controller.op.call(
        "AddGateway", operator_pb2.AddGatewayRequest(tenant="acme", name="gw1", token_ttl_seconds=1)
    )
    await asyncio.sleep(1.5)
    with pytest.raises(EnrollError, match="expired"):
        await enroll(controller.op.address, reply.enrollment_token, tmp_path / "y")
    # None of this enrolled anything.
    gateways = await controller.op.call("ListGateways", operator_pb2.ListGatewaysRequest(tenant="acme"))
    assert {g.name: g.status for g in gateways.gateways} == {"gw0": "pending", "gw1": "pending"}
    # The genuine token still works after all the failed attempts.
    assert (await enroll(controller.op.address, token, tmp_path / "z")).label == "acme/gw0"


async def test_gateway_api_needs_a_valid_unrevoked_certificate(
    controller: RunningController, tmp_path: Path
) -> None:
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "gw0", start=False)
    ident = sim.agent.identity
    ca_pem = ident.ca_path.read_bytes()
    good = grpc.ssl_channel_credentials(ca_pem, ident.key_path.read_bytes(), ident.cert_path.read_bytes())
    ack = await gateway_call(controller, good)
    assert ack.desired.global_seq == 0

    # No client certificate: the TLS handshake itself fails.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway_call(controller, grpc.ssl_channel_credentials(ca_pem))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    # A certificate from another CA, claiming the same gateway id.
    rogue = CertificateAuthority.load_or_create(tmp_path / "rogue-ca")
    key_pem, csr_pem = make_tls_key_and_csr()
    issued = rogue.sign_gateway_csr(csr_pem, tenant_id=ident.tenant_id, gateway_id=ident.gateway_id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway_call(controller, grpc.ssl_channel_credentials(ca_pem, key_pem, issued.cert_pem))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    # Revoked: the handshake succeeds (same CA) but every call is refused.
    await controller.op.call("RevokeGateway", operator_pb2.GatewayRef(tenant="acme", name="gw0"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway_call(controller, good)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (err.value.details() or "")


async def test_operator_api_needs_the_operator_credential(controller: RunningController) -> None:
    ca_pem = (controller.settings.pki_dir / "ca.crt").read_bytes()
    creds = grpc.ssl_channel_credentials(ca_pem)
    async with grpc.aio.secure_channel(controller.app.grpc_address, creds) as ch:
        stub = operator_pb2_grpc.OperatorServiceStub(ch)
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.CreateTenant(operator_pb2.CreateTenantRequest(name="evil"), metadata=metadata,
                                        timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    tenants = await controller.op.call("ListTenants", operator_pb2.ListTenantsRequest())
    assert [t.name for t in tenants.tenants] == []


async def test_a_hostile_agent_version_is_stored_inert(
    controller: RunningController, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version an agent sends at Enroll is its own text: stored with terminal controls escaped
    and still within the 64-character column (escaping makes it longer, so it is cut after)."""
    evil = "\x1b]0;owned\x07\x1b[2J\x1b[31mFAKE\u202e" + "\x9b6n" * 10 + "\x7f\r"
    assert len(evil) <= 64 and len(clean_line(evil)) > 64
    monkeypatch.setattr("gateway_agent.enroll.__version__", evil)  # what the real client sends
    await controller.op.create_tenant("acme")
    token = await controller.op.add_gateway("acme", "gw0")
    identity = await enroll(controller.op.address, token, tmp_path / "a")
    assert controller.app.db is not None
    with controller.app.db.session(readonly=True) as s:
        stored = s.get(Gateway, identity.gateway_id)
        assert stored is not None and stored.status == "enrolled"
        version = stored.agent_version
    assert not has_unsafe(version)
    assert version == clean_line(evil, 64) and len(version) == 64
    assert version.startswith("\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mFAKE\\u202e")  # evidence stays readable
