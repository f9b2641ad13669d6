"""The device budget (issue 11): the agent enforces its highest-ranked indicators, reports how many
it left out, and the controller shows it; unit tests and one real controller with a real agent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from controller.simulation import enroll_agent, wait_until
from gateway_agent.backends.recording import RecordingBackend
from gateway_agent.budget import BudgetedBackend, budget_for, default_budget, within_budget
from gateway_agent.state import DesiredState, StateChange
from mssp.common.channels import GLOBAL_CHANNEL
from mssp.v1 import common_pb2, operator_pb2
from tests.support.fleet import RunningController

TENANT = "tenant:t1"


def ioc(value: str, confidence: int, expires: int = 0) -> common_pb2.Ioc:
    return common_pb2.Ioc(type=common_pb2.IOC_TYPE_IPV4, value=value, confidence=confidence,
                          expires_at_ms=expires)


def state_with(global_iocs: list[common_pb2.Ioc], tenant_iocs: list[common_pb2.Ioc]) -> DesiredState:
    state = DesiredState(TENANT)
    for name, iocs in ((GLOBAL_CHANNEL, global_iocs), (TENANT, tenant_iocs)):
        state.channels[name].seq = 1
        state.channels[name].iocs.update({(i.type, i.value): i for i in iocs})
    return state


def values(state: DesiredState) -> set[str]:
    return {i.value for ch in state.channels.values() for i in ch.iocs.values()}


def test_the_highest_ranked_are_kept_and_the_rest_counted() -> None:
    state = state_with(
        [ioc("198.51.100.1", 90), ioc("198.51.100.2", 50), ioc("198.51.100.3", 70)],
        [ioc("203.0.113.1", 60), ioc("203.0.113.2", 30)],  # a tenant's own: x1.25 (75, 37.5)
    )
    view, left_out = within_budget(state, 3)
    assert left_out == 2 and values(view) == {"198.51.100.1", "203.0.113.1", "198.51.100.3"}
    assert view.versions() == state.versions() and values(state) != values(view)  # the state is untouched
    same, none = within_budget(state, 5)
    assert same is state and none == 0


def test_ties_go_to_the_longer_lived_then_by_value_and_expired_do_not_count() -> None:
    state = state_with([ioc("198.51.100.5", 80, expires=2**40), ioc("198.51.100.4", 80),
                        ioc("198.51.100.6", 80), ioc("198.51.100.7", 99, expires=1)], [])
    view, left_out = within_budget(state, 2, at_ms=10_000)
    assert (left_out, values(view)) == (1, {"198.51.100.4", "198.51.100.6"})  # never expires first


def test_budgeted_backend_passes_deltas_while_it_fits_and_applies_whole_over_budget(tmp_path: Path) -> None:
    inner = RecordingBackend(tmp_path / "rec")
    backend = BudgetedBackend(inner, budget=2)
    state = state_with([ioc("198.51.100.1", 90)], [])
    backend.apply_full(state)
    added = ioc("198.51.100.2", 10)
    state.channels[GLOBAL_CHANNEL].iocs[(added.type, added.value)] = added
    backend.apply_delta(state, StateChange(GLOBAL_CHANNEL, 2, added=[added]))
    assert (inner.applies, inner.deltas, backend.left_out) == (1, 1, 0)
    better = ioc("198.51.100.3", 95)
    state.channels[GLOBAL_CHANNEL].iocs[(better.type, better.value)] = better
    backend.apply_delta(state, StateChange(GLOBAL_CHANNEL, 3, added=[better]))
    recorded = {i["value"] for i in json.loads(inner.path.read_text())["iocs"]}
    assert recorded == {"198.51.100.1", "198.51.100.3"} and inner.applies == 2  # the 10 fell out
    assert backend.budget_report() == {"ioc_budget": 2, "left_out_by_budget": 1}
    with pytest.raises(ValueError):
        BudgetedBackend(inner, budget=0)


def test_the_budget_comes_from_the_flag_the_file_or_the_machine(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:         262144 kB\nMemFree: 1 kB\n")  # a 256 MB router
    assert default_budget(meminfo) == 256 * 400
    meminfo.write_text("MemTotal: 16384 kB\n")
    assert default_budget(meminfo) == 10_000  # never below the floor
    assert default_budget(tmp_path / "missing") == 2_000_000
    assert budget_for(tmp_path, 1234) == 1234
    (tmp_path / "enforcement.json").write_text(json.dumps({"ioc_budget": 5000}))
    assert budget_for(tmp_path) == 5000
    for bad in (0, -3, "many", 1.5):
        (tmp_path / "enforcement.json").write_text(json.dumps({"ioc_budget": bad}))
        with pytest.raises(ValueError, match="ioc_budget"):
            budget_for(tmp_path)
    with pytest.raises(ValueError, match="--ioc-budget"):
        budget_for(tmp_path, 0)


async def test_fleet_status_shows_what_a_gateway_left_out(controller: RunningController) -> None:
    op = controller.op
    await op.create_tenant("acme")
    for i in range(1, 9):
        await op.add_ioc(f"198.51.100.{i}")
    state_dir = controller.root / "agents" / "acme-gw1"
    sim = await enroll_agent(op, "acme", "gw1", state_dir, heartbeat_interval=1.0,
                             backend=BudgetedBackend(RecordingBackend(state_dir / "recording"), budget=5))
    controller.agents.append(sim)

    await wait_until(lambda: len(sim.ioc_values()) == 8, within=30)
    deadline = asyncio.get_running_loop().time() + 30
    while True:  # the status report follows the apply
        (gw,) = (await op.call("FleetStatus", operator_pb2.FleetStatusRequest(tenant="acme"))).gateways
        if gw.left_out_by_budget == 3 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert (gw.left_out_by_budget, gw.ioc_budget) == (3, 5)
    recorded = json.loads((state_dir / "recording" / "desired.json").read_text())
    assert len(recorded["iocs"]) == 5 and len(sim.ioc_values()) == 8  # the state keeps all 8
