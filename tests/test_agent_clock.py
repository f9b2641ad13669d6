"""Routers whose clock is far off (no real-time clock, NTP blocked): the agent measures its offset
against the controller on every status report, judges push freshness and key retirement by the
controller's time once its own is more than FAR_MS off, reports the offset, and fleet status shows
it. Against a real controller, broker and agent whose clock runs three days ahead (every push
would look expired) or two days behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.simulation import enroll_agent, wait_until
from gateway_agent.backends.recording import RecordingBackend
from gateway_agent.budget import within_budget
from gateway_agent.clock import FAR_MS, AgentClock, before_trust, enforcement_ms
from gateway_agent.state import DesiredState
from mssp.common.clock import now_ms
from mssp.common.envelope import PushExpired, open_signed, sign_push
from mssp.common.keyring import KeyRing, Trusted, UntrustedKey
from mssp.v1 import common_pb2, operator_pb2, push_pb2
from tests.support.fleet import RunningController

DAY_MS = 86400_000
WAIT = 30.0


def test_clock_uses_the_controllers_time_only_when_far_off() -> None:
    local = [1_000_000_000_000]
    clock = AgentClock(local=lambda: local[0])
    assert clock.now_ms() == local[0] and not clock.measured
    clock.observe(local[0] - FAR_MS // 2, local[0] - 10, local[0] + 10)  # half FAR_MS ahead: trusted
    assert clock.measured and not clock.far_off and clock.now_ms() == local[0]
    clock.observe(local[0] - 3 * DAY_MS, local[0] - 10, local[0] + 10)  # three days ahead
    assert clock.far_off and clock.offset_ms == 3 * DAY_MS and clock.now_ms() == local[0] - 3 * DAY_MS
    clock.observe(0, local[0], local[0])  # an older controller sends no time: the last offset stays
    clock.observe(local[0], local[0] + 5, local[0])  # the local clock jumped back meanwhile: ignored
    assert clock.offset_ms == 3 * DAY_MS


def test_freshness_and_retirement_are_judged_by_the_given_time() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = sign_push(key, push_pb2.Push(channel="global", seq=1, beacon=push_pb2.Beacon()))
    public = key.public_key()
    with pytest.raises(PushExpired):
        open_signed(public, envelope, {"global"}, now=now_ms() + 3 * DAY_MS)
    assert open_signed(public, envelope, {"global"}, now=now_ms()).seq == 1
    ring = KeyRing([Trusted(public.public_bytes_raw(), now_ms() + DAY_MS)])
    assert open_signed(ring, envelope, {"global"}, now=now_ms()).seq == 1
    with pytest.raises(UntrustedKey, match="retired"):
        ring.verifier(envelope.key_id, now_ms() + 2 * DAY_MS)


@pytest.mark.parametrize("skew_days", [3, -2])
async def test_agent_with_a_clock_days_off_keeps_enforcing(
    controller: RunningController, skew_days: int
) -> None:
    op = controller.op
    await op.create_tenant("acme")
    clock = AgentClock(local=lambda: now_ms() + skew_days * DAY_MS)
    state_dir = controller.root / "agents" / "skewed"
    sim = await enroll_agent(op, "acme", "gw0", state_dir, heartbeat_interval=2.0, clock=clock)
    controller.agents.append(sim)
    await op.add_ioc("198.51.100.31")
    await wait_until(lambda: "198.51.100.31" in sim.ioc_values(), within=WAIT)  # the resync and the push
    await wait_until(lambda: clock.far_off, within=WAIT)  # a clock behind refuses nothing: measured later
    assert abs(clock.offset_ms - skew_days * DAY_MS) < 5_000
    await op.add_ioc("198.51.100.32")
    await wait_until(lambda: "198.51.100.32" in sim.ioc_values(), within=WAIT)

    deadline = asyncio.get_running_loop().time() + WAIT
    while True:  # the offset is reported: fleet status shows the router's clock is off
        gw = await op.call("GetGateway", operator_pb2.GatewayRef(tenant="acme", name="gw0"))
        if abs(gw.clock_offset_ms - skew_days * DAY_MS) < 5_000:
            break
        assert asyncio.get_running_loop().time() < deadline, gw
        await asyncio.sleep(0.2)
    assert gw.converged


@pytest.fixture
def router_two_days_ahead() -> Iterator[AgentClock]:
    """This host's clock as seen by a controller two days behind it (as if the router ran ahead)."""
    clock = AgentClock()  # the system clock: its measurement sets what expiries are judged by
    now = now_ms()
    clock.observe(now - 2 * DAY_MS, now, now)
    try:
        yield clock
    finally:
        now = now_ms()
        clock.observe(now, now, now)  # back to the system clock for the tests after this one
        assert abs(enforcement_ms() - now_ms()) < 1000


def test_router_side_expiry_follows_the_controllers_time(router_two_days_ahead: AgentClock,
                                                         tmp_path: Path) -> None:
    """A 1-hour indicator, valid by the controller's clock, is already expired by a router clock two
    days ahead: enforcement must keep it (nft timeout, recording, budget's live count)."""
    controller_now = router_two_days_ahead.now_ms()
    assert abs(enforcement_ms() - controller_now) < 5000 and now_ms() - controller_now > DAY_MS
    state = DesiredState("tenant:t")
    ioc = common_pb2.Ioc(type=common_pb2.IOC_TYPE_IPV4, value="203.0.113.44", confidence=80,
                         expires_at_ms=controller_now + 3600_000)
    state.channels["global"].iocs[(ioc.type, ioc.value)] = ioc
    assert [i.value for i in state.live_iocs()] == ["203.0.113.44"]
    assert [i.value for i in state.live_iocs(at_ms=now_ms())] == []  # what the router's clock says
    assert within_budget(state, 1)[1] == 0
    backend = RecordingBackend(tmp_path)
    backend.apply_full(state)
    assert [i["value"] for i in json.loads(backend.path.read_text())["iocs"]] == ["203.0.113.44"]


def test_a_made_up_clock_does_not_move_enforcement() -> None:
    clock = AgentClock(local=lambda: now_ms() + 3 * DAY_MS)
    clock.observe(now_ms(), now_ms() + 3 * DAY_MS, now_ms() + 3 * DAY_MS)
    assert clock.far_off and abs(enforcement_ms() - now_ms()) < 1000


def test_a_clock_before_the_ca_is_named_as_the_reason_tls_fails(tmp_path: Path) -> None:
    from controller.pki import CertificateAuthority

    pem = CertificateAuthority.load_or_create(tmp_path).cert_pem
    assert before_trust(pem, 5.0) is not None and "1970-01-01T00:00:05" in str(before_trust(pem, 5.0))
    assert before_trust(pem, now_ms() / 1000) is None
    assert before_trust(b"not a certificate", 5.0) is None
