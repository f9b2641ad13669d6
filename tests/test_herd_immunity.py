"""Herd immunity end to end, on a real controller, broker and agents (recording backend, whose
"kernel hits" the test makes): two organisations' gateways hit an indicator, the agents report
the sightings at once, the policy promotes it, and every gateway of every tenant in the alliance
enforces it; a tenant outside the alliance gets nothing, and nothing a gateway receives names the
organisations that saw it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import PromotionSettings
from controller.services.sightings import Report
from controller.simulation import SimulatedAgent, wait_until
from gateway_agent.backends.recording import RecordingBackend, read_recorded
from mssp.common.channels import ALLIANCE_CHANNEL
from mssp.v1 import common_pb2
from tests.support.fleet import RunningController, controller_settings, running_controller

C2 = "203.0.113.50"
WAIT = 30.0


@pytest.fixture
async def herd(tmp_path: Path) -> AsyncIterator[RunningController]:
    settings = controller_settings(tmp_path).model_copy(
        update={"promotion": PromotionSettings(min_tenants=2, min_confidence=60, ttl="2d")})
    async with running_controller(settings, tmp_path) as ctl:
        yield ctl


def recording(sim: SimulatedAgent) -> RecordingBackend:
    return sim.recording()


async def test_two_organisations_hits_protect_the_alliance(herd: RunningController) -> None:
    op = herd.op
    tenants = ("acme", "globex", "initech", "umbrella")
    ids = {name: (await op.create_tenant(name)).id for name in tenants}
    for name in tenants[:3]:
        await op.set_sharing(name, True)
    gws = {name: await herd.enroll(name, "gw0") for name in tenants}
    for name in ("acme", "globex"):
        await op.add_ioc(C2, f"tenant:{name}")  # confidence 80: each has it from its own source
    for name in ("acme", "globex"):
        await wait_until(lambda n=name: C2 in gws[n].ioc_values(), within=WAIT)
    await wait_until(lambda: gws["initech"].agent.state.follows_alliance, within=WAIT)

    recording(gws["acme"]).record_hit(C2, "192.0.2.10")
    await wait_until(lambda: gws["acme"].agent.hits.reported == 1, within=WAIT)
    (first,) = await op.sightings()
    assert first.state == "candidate" and first.sharing_tenants == 1
    assert C2 not in gws["initech"].ioc_values()

    recording(gws["globex"]).record_hit(C2, "192.0.2.20", packets=3)
    await wait_until(lambda: C2 in gws["initech"].ioc_values(), within=WAIT)
    promoted = await op.sightings("promoted")
    assert [(s.value, s.scope, s.decided_by) for s in promoted] == [(C2, "alliance", "policy")]
    seen_at = {(w.tenant, w.host) for w in promoted[0].seen_at}
    assert seen_at == {("acme", "192.0.2.10"), ("globex", "192.0.2.20")}

    # What initech's gateway received: one anonymous indicator on the alliance channel.
    initech = gws["initech"].agent.state
    (ioc,) = initech.channels[ALLIANCE_CHANNEL].iocs.values()
    assert (ioc.value, ioc.source) == (C2, "alliance") and ioc.expires_at_ms > 0
    held = b"".join(p.SerializeToString() for p in initech.snapshot_pushes())
    held += b"".join(path.read_bytes() for path in gws["initech"].state_dir.rglob("*") if path.is_file())
    for name in ("acme", "globex"):
        sim = gws[name].agent.identity
        for secret in (name, ids[name], sim.gateway_id, "192.0.2.10", "192.0.2.20"):
            assert secret.encode() not in held, secret
    # Outside the alliance: nothing arrives (its own gateway never hit it).
    assert C2 not in gws["umbrella"].ioc_values()
    assert not gws["umbrella"].agent.state.follows_alliance

    # initech's tenant API key sees the indicator and its confidence, not who saw it (2 < k = 3).
    service = herd.app.service
    assert service is not None
    client = TestClient(create_app(service))
    _, key = service.apikeys.create("initech", ["indicators:read", "gateways:read"])
    reply = client.get("/v1/indicators?scope=alliance", headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200, reply.text
    (shared,) = reply.json()["items"]
    assert (shared["value"], shared["origin"], shared["seen_by_organisations"]) == (C2, "alliance", None)
    for name in ("acme", "globex"):
        for secret in (name, ids[name], gws[name].agent.identity.gateway_id, "192.0.2.10", "192.0.2.20"):
            assert secret not in reply.text, secret
    me = client.get("/v1/tenant", headers={"Authorization": f"Bearer {key}"}).json()
    assert me["sharing"] == "alliance"
    _, outsider = service.apikeys.create("umbrella", ["indicators:read"])
    nothing = client.get("/v1/indicators?scope=alliance", headers={"Authorization": f"Bearer {outsider}"})
    assert nothing.status_code == 200 and nothing.json()["items"] == []
    bad = client.get("/v1/indicators?scope=global", headers={"Authorization": f"Bearer {key}"})
    assert bad.status_code in (400, 422)
    assert client.get("/v1/indicators?scope=alliance", headers={"Authorization": f"Bearer {outsider}x"}
                      ).status_code == 401

    # initech says it is a false positive: its gateway stops enforcing it at once, globex's does not.
    post = f"/v1/indicators/{shared['id']}/false-positive"
    assert client.post(post, headers={"Authorization": f"Bearer {key}"}).status_code == 403  # read-only key
    _, writer = service.apikeys.create("initech", ["indicators:write"])
    reported = client.post(post, headers={"Authorization": f"Bearer {writer}"})
    assert reported.status_code == 200 and reported.json() == {"indicator": C2, "exempt": True, "new": True}
    await wait_until(lambda: C2 not in enforced(gws["initech"]), within=WAIT)
    assert (common_pb2.IOC_TYPE_IPV4, C2) in initech.channels[ALLIANCE_CHANNEL].iocs  # held, not enforced
    assert C2 in enforced(gws["globex"]) and C2 in enforced(gws["acme"])
    for foreign in ("/v1/indicators/999999/false-positive", "/v1/indicators/abc/false-positive"):
        assert client.post(foreign, headers={"Authorization": f"Bearer {writer}"}).status_code in (404, 422)
    _, umbrella_writer = service.apikeys.create("umbrella", ["indicators:write"])
    assert client.post(post, headers={"Authorization": f"Bearer {umbrella_writer}"}).status_code == 404


def enforced(sim: SimulatedAgent) -> set[str]:
    """What the backend was handed (the recording), not what the agent holds."""
    return {i["value"] for i in read_recorded(recording(sim).path.parent)["iocs"]}  # type: ignore[union-attr,index]


async def test_seen_by_shows_from_k_organisations(herd: RunningController) -> None:
    service = herd.app.service
    assert service is not None
    for name in ("acme", "globex", "initech"):
        service.create_tenant(name)
        service.set_sharing(name, True)
        service.add_ioc(C2, f"tenant:{name}")
    for name in ("acme", "globex", "initech"):
        _, secret, _ = service.add_gateway(name, "gw0")
        ticket = service.redeem_enrollment_token(secret)
        service.complete_enrollment(ticket.gateway_id, cert_serial=f"s{name}", nats_public_key=f"U{name}",
                                    agent_version="1")
        service.sightings.record(ticket.tenant_id, ticket.gateway_id,
                                 [Report(C2, "192.0.2.9", "firewall", 1, 0, 0)])
    _, key = service.apikeys.create("acme", ["indicators:read"])
    page = TestClient(create_app(service)).get("/v1/indicators?scope=alliance&limit=1",
                                               headers={"Authorization": f"Bearer {key}"}).json()
    assert [(i["value"], i["seen_by_organisations"]) for i in page["items"]] == [(C2, 3)]
    assert page["next_cursor"] is None
