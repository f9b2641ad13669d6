"""Tenant isolation enforced by the broker, using the credentials a real enrollment produced."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.errors import Error as NatsError

from controller.simulation import wait_until
from mssp.common.channels import channel_subject, telemetry_subject_prefix, tenant_channel
from tests.support.fleet import RunningController


async def test_gateway_credentials_cannot_reach_another_tenant(controller: RunningController) -> None:
    a_tenant = await controller.op.create_tenant("acme")
    b_tenant = await controller.op.create_tenant("globex")
    a = await controller.enroll("acme", "gw0", start=False)
    b = await controller.enroll("globex", "gw0", start=False)
    ident = a.agent.identity
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(
        servers=ident.nats_urls, user_credentials=str(ident.creds_path),
        inbox_prefix=f"_INBOX_{ident.gateway_id}", error_cb=on_error, allow_reconnect=False,
    )
    received: list[bytes] = []

    async def collect(msg: nats.aio.msg.Msg) -> None:
        received.append(msg.data)

    try:
        # Its own subjects work.
        await nc.subscribe(channel_subject(tenant_channel(a_tenant.id)), cb=collect)
        # Another tenant's: refused by the server (permissions violation), and nothing arrives.
        await nc.subscribe(channel_subject(tenant_channel(b_tenant.id)), cb=collect)
        await nc.flush()
        await wait_until(lambda: any("permissions violation" in str(e).lower() for e in errors), within=5)
        errors.clear()
        controller_nc = controller.app.nc
        assert controller_nc is not None
        await controller_nc.publish(channel_subject(tenant_channel(b_tenant.id)), b"for globex only")
        await controller_nc.publish(channel_subject(tenant_channel(a_tenant.id)), b"for acme")
        await controller_nc.flush()
        await wait_until(lambda: b"for acme" in received, within=5)
        await asyncio.sleep(0.2)
        assert received == [b"for acme"]

        # Publishing as another gateway (its telemetry subject) or on a push subject is refused.
        b_ident = b.agent.identity
        await nc.publish(telemetry_subject_prefix(b_ident.tenant_id, b_ident.gateway_id) + ".batch", b"x")
        await nc.flush()
        await wait_until(lambda: any("permissions violation" in str(e).lower() for e in errors), within=5)
        errors.clear()
        await nc.publish(channel_subject("global"), b"forged")
        await nc.flush()
        await wait_until(lambda: any("permissions violation" in str(e).lower() for e in errors), within=5)
    finally:
        await nc.close()


async def test_unauthenticated_broker_connection_is_refused(controller: RunningController) -> None:
    with pytest.raises((NatsError, OSError)) as err:
        nc = await nats.connect(servers=controller.app.nats_urls, allow_reconnect=False, connect_timeout=3)
        await nc.close()
    assert "authorization" in str(err.value).lower()
