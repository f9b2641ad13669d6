"""The agent's hit watcher (pure part): the first hit of an indicator and host is reported at once,
repeats only after REPORT_AGAIN and only when it kept hitting, and memory stays bounded. And the
tenant's false positives: not enforced from shared channels, still from its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_agent import sightings
from gateway_agent.backends.recording import RecordingBackend, read_recorded
from gateway_agent.exempt import ExemptingBackend, exempt_view
from gateway_agent.sightings import REPORT_AGAIN, HitWatcher
from gateway_agent.state import DesiredState, StateChange
from mssp.v1 import common_pb2


def watcher(tmp_path: Path) -> HitWatcher:
    return HitWatcher(RecordingBackend(tmp_path), lambda: None, "test")


def test_first_hit_at_once_then_rate_limited(tmp_path: Path) -> None:
    w = watcher(tmp_path)
    first = w.new_sightings({("203.0.113.50", "192.0.2.10"): 1}, 100.0)
    assert [(s.indicator, s.host, s.count, s.via) for s in first] == [
        ("203.0.113.50", "192.0.2.10", 1, "firewall")]
    assert w.new_sightings({("203.0.113.50", "192.0.2.10"): 50}, 101.0) == []  # within REPORT_AGAIN
    again = w.new_sightings({("203.0.113.50", "192.0.2.10"): 60}, 101.0 + REPORT_AGAIN)
    assert [s.count for s in again] == [60] and again[0].first_seen_ms == first[0].first_seen_ms
    assert w.new_sightings({("203.0.113.50", "192.0.2.10"): 60}, 102.0 + 2 * REPORT_AGAIN) == []
    other_host = w.new_sightings({("203.0.113.50", "192.0.2.11"): 1}, 103.0)
    assert [s.host for s in other_host] == ["192.0.2.11"]  # a second host is news at once


def test_memory_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sightings, "MAX_KNOWN", 10)
    w = watcher(tmp_path)
    w.new_sightings({(f"203.0.113.{i}", "192.0.2.10"): 1 for i in range(25)}, 1.0)
    assert len(w.known) == 10 and ("203.0.113.24", "192.0.2.10") in w.known


async def test_unsent_sightings_wait_for_the_controller(tmp_path: Path) -> None:
    backend = RecordingBackend(tmp_path)
    w = HitWatcher(backend, lambda: None, "test")  # no controller channel yet
    backend.record_hit("203.0.113.50", "192.0.2.10")
    await w.poll()
    assert len(w.pending) == 1 and w.reported == 0
    await w.poll()  # not reported twice while waiting
    assert len(w.pending) == 1


def test_exempt_values_leave_shared_channels_only(tmp_path: Path) -> None:
    state = DesiredState("tenant:t1")
    for channel in ("global", "tenant:t1"):
        state.channels[channel].iocs[(1, "203.0.113.50")] = common_pb2.Ioc(type=1, value="203.0.113.50")
    state.follow("alliance")
    state.channels["alliance"].iocs[(1, "203.0.113.51")] = common_pb2.Ioc(type=1, value="203.0.113.51")
    state.channels["alliance"].iocs[(1, "203.0.113.52")] = common_pb2.Ioc(type=1, value="203.0.113.52")
    recording = RecordingBackend(tmp_path)
    backend = ExemptingBackend(recording)
    backend.apply_full(state)
    assert len(read_recorded(tmp_path)["iocs"]) == 4  # type: ignore[arg-type]  (nothing exempt yet)
    assert exempt_view(state) is state
    state.policy.exempt.extend(["203.0.113.50", "203.0.113.51"])
    backend.apply_full(state)
    held = {(i["value"]) for i in read_recorded(tmp_path)["iocs"]}  # type: ignore[union-attr,index]
    assert held == {"203.0.113.50", "203.0.113.52"}  # .50 stays: the tenant's own channel holds it
    assert backend.verify(state) and len(state.channels["alliance"].iocs) == 2  # the state is untouched
    change = StateChange("alliance", 1, added=[common_pb2.Ioc(type=1, value="203.0.113.51")])
    backend.apply_delta(state, change)  # touches an exempt value: applied whole, still without it
    assert recording.applies == 3 and recording.deltas == 0
