"""Re-enrollment and delete over real gRPC and a real broker (issue 9 item 4): a revoked router that
gets a new token enrolls as a new identity while its old certificate and NATS user stay refused;
a deleted gateway's credentials stop working at once."""

from __future__ import annotations

from pathlib import Path

import grpc
import nats
import pytest

from gateway_agent.enroll import enroll
from gateway_agent.identity import AgentIdentity
from mssp.v1 import operator_pb2
from tests.support.fleet import RunningController
from tests.test_enrollment_auth import gateway_call


def tls(identity: AgentIdentity) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(identity.ca_path.read_bytes(), identity.key_path.read_bytes(),
                                        identity.cert_path.read_bytes())


async def assert_refused(ctl: RunningController, identity: AgentIdentity) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway_call(ctl, tls(identity))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def broker_refuses(identity: AgentIdentity) -> bool:
    try:
        nc = await nats.connect(servers=identity.nats_urls, user_credentials=str(identity.creds_path),
                                allow_reconnect=False, connect_timeout=2)
    except Exception as exc:
        return "authorization violation" in str(exc).lower() or "revoked" in str(exc).lower()
    await nc.close()
    return False


async def test_revoked_router_re_enrolls_as_a_new_identity_then_is_deleted(
    controller: RunningController, tmp_path: Path
) -> None:
    op = controller.op
    await op.create_tenant("acme")
    old = await enroll(op.address, await op.add_gateway("acme", "gw0"), tmp_path / "old")
    assert (await gateway_call(controller, tls(old))).desired.global_seq == 0
    assert not await broker_refuses(old)
    ref = operator_pb2.GatewayRef(tenant="acme", name="gw0")

    await op.call("RevokeGateway", ref)
    request = operator_pb2.IssueGatewayTokenRequest(tenant="acme", name="gw0")
    reply = await op.call("IssueGatewayToken", request)
    assert reply.new_identity and reply.gateway.id != old.gateway_id
    new = await enroll(op.address, reply.enrollment_token, tmp_path / "new")
    assert new.gateway_id == reply.gateway.id and new.label == "acme/gw0"
    assert (await gateway_call(controller, tls(new))).desired.global_seq == 0
    await assert_refused(controller, old)  # the old certificate stays revoked
    assert await broker_refuses(old) and not await broker_refuses(new)

    deleted = await op.call("DeleteGateway", ref)
    assert deleted.id == new.gateway_id and deleted.status == "revoked"
    await assert_refused(controller, new)
    await assert_refused(controller, old)
    assert await broker_refuses(new)
    listed = await op.call("ListGateways", operator_pb2.ListGatewaysRequest(tenant="acme"))
    assert list(listed.gateways) == []
