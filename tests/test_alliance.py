"""The alliance scope against a real controller, a real broker and real agents (recording backend):
only gateways of tenants that share receive alliance indicators, the broker refuses the alliance
subject to everyone else, and `tenant set-sharing` moves a tenant's gateways in or out at once:
their NATS JWTs are re-issued, the old ones die at the broker, and a tenant that leaves stops
enforcing what the alliance sent it."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError

from controller.domain.errors import InvalidInput, NotFound
from controller.nats.auth import decode_jwt_claims
from controller.service import ControllerService
from controller.simulation import SimulatedAgent, wait_until
from controller.store.db import Database
from mssp.common.channels import ALLIANCE_CHANNEL, channel_subject
from mssp.common.creds import parse_creds_file
from mssp.v1 import operator_pb2
from tests.support.fleet import RunningController

ALLIANCE_SUBJECT = channel_subject(ALLIANCE_CHANNEL)
WAIT = 30.0


async def alliance_subscribe_refused(creds: Path, urls: list[str], inbox: str) -> bool:
    """Connect with `creds` and try to subscribe to the alliance subject: True when the broker
    refuses it (a permissions violation), False when it lets it through."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(servers=urls, user_credentials=str(creds), inbox_prefix=inbox, error_cb=on_error,
                            allow_reconnect=False, connect_timeout=5)
    try:
        await nc.subscribe(ALLIANCE_SUBJECT)
        await nc.flush()
        await asyncio.sleep(0.3)  # the violation arrives asynchronously, after the PONG
        return any("permissions violation" in str(e).lower() for e in errors)
    finally:
        await nc.close()


async def connect_refused(creds: Path, urls: list[str], inbox: str) -> bool:
    try:
        nc = await nats.connect(servers=urls, user_credentials=str(creds), inbox_prefix=inbox,
                                allow_reconnect=False, connect_timeout=5)
    except (NatsError, OSError) as exc:
        return "authorization" in str(exc).lower() or "revoked" in str(exc).lower()
    await nc.close()
    return False


def may_subscribe_alliance(creds: Path) -> bool:
    jwt, _ = parse_creds_file(creds.read_text())
    return ALLIANCE_SUBJECT in decode_jwt_claims(jwt)["nats"]["sub"]["allow"]


def inbox(sim: SimulatedAgent) -> str:
    return f"_INBOX_{sim.agent.identity.gateway_id}"


async def test_alliance_reaches_only_sharing_tenants_and_follows_set_sharing(
    controller: RunningController, tmp_path: Path
) -> None:
    op = controller.op
    for name in ("acme", "globex"):
        await op.create_tenant(name)
    assert (await op.set_sharing("acme", True)).sharing
    a = await controller.enroll("acme", "gw0")
    g = await controller.enroll("globex", "gw0")
    urls = a.agent.identity.nats_urls
    assert may_subscribe_alliance(a.agent.identity.creds_path)  # enrolled into a sharing tenant
    assert not may_subscribe_alliance(g.agent.identity.creds_path)

    await op.add_ioc("203.0.113.77", "alliance")
    await op.add_ioc("198.51.100.1")  # global: once globex has it, it has had its chance at the other
    await wait_until(lambda: {"203.0.113.77", "198.51.100.1"} <= a.ioc_values(), within=WAIT)
    await wait_until(lambda: "198.51.100.1" in g.ioc_values(), within=WAIT)
    await asyncio.sleep(1.5)  # a beacon interval: nothing more is on its way to globex
    assert "203.0.113.77" not in g.ioc_values()
    assert not g.agent.state.follows_alliance and a.agent.state.follows_alliance
    assert a.versions().alliance_seq == 1 and g.versions().alliance_seq == 0

    # The broker, not the agents' manners: globex's credentials cannot subscribe to the alliance.
    assert await alliance_subscribe_refused(g.agent.identity.creds_path, urls, inbox(g))
    assert not await alliance_subscribe_refused(a.agent.identity.creds_path, urls, inbox(a))

    # globex joins: its gateway gets new credentials and the alliance's indicators, no operator action.
    old_g = tmp_path / "globex-old.creds"
    shutil.copy(g.agent.identity.creds_path, old_g)
    assert (await op.set_sharing("globex", True)).sharing
    await wait_until(lambda: "203.0.113.77" in g.ioc_values(), within=WAIT)
    assert may_subscribe_alliance(g.agent.identity.creds_path)
    assert await connect_refused(old_g, urls, inbox(g))  # the JWT it was enrolled with is dead
    await op.add_ioc("203.0.113.78", "alliance")  # and live pushes reach it over NATS
    await wait_until(lambda: "203.0.113.78" in g.ioc_values() & a.ioc_values(), within=WAIT)

    # acme leaves: what the alliance sent it is no longer enforced, and its broker access is gone.
    old_a = tmp_path / "acme-old.creds"
    shutil.copy(a.agent.identity.creds_path, old_a)
    assert not (await op.set_sharing("acme", False)).sharing
    await wait_until(lambda: not a.agent.state.follows_alliance, within=WAIT)
    assert not {"203.0.113.77", "203.0.113.78"} & a.ioc_values()
    assert "198.51.100.1" in a.ioc_values()
    assert await connect_refused(old_a, urls, inbox(a))
    await wait_until(lambda: not may_subscribe_alliance(a.agent.identity.creds_path), within=WAIT)
    assert await alliance_subscribe_refused(a.agent.identity.creds_path, urls, inbox(a))
    await op.add_ioc("203.0.113.79", "alliance")
    await wait_until(lambda: "203.0.113.79" in g.ioc_values(), within=WAIT)
    await asyncio.sleep(1.5)
    assert "203.0.113.79" not in a.ioc_values()

    # Both converge on what they should hold, as the operator sees it.
    async def converged() -> bool:
        fleet = await op.call("FleetStatus", operator_pb2.FleetStatusRequest())
        return fleet.total == 2 and fleet.converged == 2

    for _ in range(int(WAIT / 0.2)):
        if await converged():
            break
        await asyncio.sleep(0.2)
    fleet = await op.call("FleetStatus", operator_pb2.FleetStatusRequest())
    assert fleet.converged == 2, fleet
    by_tenant = {gw.tenant: gw for gw in fleet.gateways}
    assert by_tenant["globex"].desired.alliance_seq == 3 == by_tenant["globex"].applied.alliance_seq
    assert by_tenant["acme"].desired.alliance_seq == 0 == by_tenant["acme"].applied.alliance_seq

    # A restart keeps following: the state file holds the alliance channel, enforced before any sync.
    await g.stop()
    g.agent.state.channels.clear()
    await g.agent.restore()
    assert g.agent.state.follows_alliance and "203.0.113.79" in g.ioc_values()


def test_set_sharing_changes_once_and_refuses_bad_input(db: Database) -> None:
    svc = ControllerService(db)
    svc.create_tenant("acme")
    _, secret, _ = svc.add_gateway("acme", "gw1")
    ticket = svc.redeem_enrollment_token(secret)
    svc.complete_enrollment(ticket.gateway_id, cert_serial="0a", nats_public_key="UKEY1", agent_version="1",
                            alliance_aware=True)
    svc.add_gateway("acme", "gw2")  # pending: re-issued too, it has no key yet
    _, old_secret, _ = svc.add_gateway("acme", "old")  # an agent from before the alliance
    old = svc.redeem_enrollment_token(old_secret)
    svc.complete_enrollment(old.gateway_id, cert_serial="0b", nats_public_key="UKEY2", agent_version="0")

    tenant, keys = svc.set_sharing("acme", True)
    assert tenant.sharing and keys == ["UKEY1"]  # the old agent keeps its JWT: it could not fetch another
    old_access = svc.alliance.broker_access(old.gateway_id)
    assert old_access is not None and old_access.jwt_issued_s == 0
    again, keys = svc.set_sharing("acme", True)
    assert again.sharing and keys == []  # nothing changed, nothing re-issued
    access = svc.alliance.broker_access(ticket.gateway_id)
    assert access is not None and access.sharing and access.jwt_issued_s > 0
    assert access.channels[-1] == ALLIANCE_CHANNEL
    first = access.jwt_issued_s
    svc.set_sharing("acme", False)
    later = svc.alliance.broker_access(ticket.gateway_id)
    assert later is not None and not later.sharing and later.jwt_issued_s > first
    assert ALLIANCE_CHANNEL not in later.channels

    with pytest.raises(NotFound, match="nobody"):
        svc.set_sharing("nobody", True)
    with pytest.raises(InvalidInput, match="on or off"):
        svc.set_sharing("acme", "yes")  # type: ignore[arg-type]
    svc.delete_tenant("acme")
    with pytest.raises(NotFound):
        svc.set_sharing("acme", True)


async def test_agents_are_back_on_nats_once_their_jwt_is_reissued(controller: RunningController) -> None:
    """The broker ends the old JWT's connection with an error, after which nats-py never reconnects:
    the agent connects anew with the JWT it fetched, rather than living on heartbeat resyncs."""
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "gw0")
    await wait_until(lambda: sim.agent.nats_connected, within=WAIT)
    first = sim.agent._nc
    await controller.op.set_sharing("acme", True)
    await wait_until(lambda: sim.agent._nc is not first and sim.agent.nats_connected, within=WAIT)
    assert first is not None and first.is_closed
    assert sim.agent.following.subscriptions.keys() >= {ALLIANCE_CHANNEL, "global"}
