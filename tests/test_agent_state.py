"""The agent's state machine, push verification and state file: pure, no network."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway_agent.state import DesiredState, Gap, Invalid, Stale
from gateway_agent.statefile import StateFile
from mssp.common.envelope import PushRejected, open_envelope, sign_push
from mssp.common.parts import MAX_ENVELOPE_BYTES
from mssp.v1 import common_pb2, push_pb2

TENANT = "tenant:t1"


def ioc(value: str, kind: int = common_pb2.IOC_TYPE_IPV4) -> common_pb2.Ioc:
    return common_pb2.Ioc(type=kind, value=value)


def delta(channel: str, seq: int, add: Sequence[str] = (), remove: Sequence[str] = ()) -> push_pb2.Push:
    return push_pb2.Push(
        channel=channel, seq=seq,
        iocs=push_pb2.IocDelta(upsert=[ioc(v) for v in add], remove=[ioc(v) for v in remove]),
    )


def test_deltas_apply_in_order_and_gaps_and_replays_are_refused() -> None:
    state = DesiredState(TENANT)
    change = state.apply(delta("global", 1, add=["192.0.2.1"]))
    assert change is not None and [i.value for i in change.added] == ["192.0.2.1"]
    with pytest.raises(Gap):
        state.apply(delta("global", 3, add=["192.0.2.3"]))
    with pytest.raises(Stale):
        state.apply(delta("global", 1, add=["192.0.2.9"]))
    state.apply(delta("global", 2, remove=["192.0.2.1"], add=["192.0.2.2"]))
    assert {i.value for i in state.live_iocs()} == {"192.0.2.2"}
    assert state.versions() == common_pb2.Versions(global_seq=2, tenant_seq=0)


def test_policy_only_on_tenant_channel_and_unknown_channels_refused() -> None:
    state = DesiredState(TENANT)
    with pytest.raises(Invalid):
        state.apply(push_pb2.Push(channel="global", seq=1, policy=common_pb2.PolicyBundle(version=1)))
    with pytest.raises(Invalid):
        state.apply(delta("tenant:other", 1, add=["192.0.2.1"]))
    change = state.apply(push_pb2.Push(channel=TENANT, seq=1, policy=common_pb2.PolicyBundle(version=4)))
    assert change is not None and change.full and state.policy.version == 4


def test_multi_part_snapshot_applies_only_when_complete() -> None:
    state = DesiredState(TENANT)
    state.apply(delta(TENANT, 1, add=["192.0.2.50"]))
    part0 = push_pb2.Push(channel=TENANT, seq=7, snapshot=push_pb2.SnapshotPart(
        index=0, policy=common_pb2.PolicyBundle(version=2), iocs=[ioc("198.51.100.1")]))
    part1 = push_pb2.Push(channel=TENANT, seq=7, snapshot=push_pb2.SnapshotPart(
        index=1, last=True, iocs=[ioc("198.51.100.2")]))
    assert state.apply(part0) is None
    assert {i.value for i in state.live_iocs()} == {"192.0.2.50"}  # nothing changes mid-snapshot
    change = state.apply(part1)
    assert change is not None and change.full
    assert {i.value for i in state.live_iocs()} == {"198.51.100.1", "198.51.100.2"}
    assert state.policy.version == 2 and state.versions().tenant_seq == 7
    with pytest.raises(Stale):
        state.apply(push_pb2.Push(channel=TENANT, seq=6, snapshot=push_pb2.SnapshotPart(index=0, last=True)))


def test_beacon_ahead_is_a_gap_and_expired_iocs_are_not_live() -> None:
    state = DesiredState(TENANT)
    with pytest.raises(Gap):
        state.apply(push_pb2.Push(channel="global", seq=2, beacon=push_pb2.Beacon()))
    expired = common_pb2.Ioc(type=common_pb2.IOC_TYPE_IPV4, value="192.0.2.7", expires_at_ms=1)
    state.apply(push_pb2.Push(channel="global", seq=1, iocs=push_pb2.IocDelta(upsert=[expired])))
    assert state.live_iocs() == [] and state.ioc_count() == 1


def test_envelope_verification() -> None:
    key = Ed25519PrivateKey.generate()
    channels = {"global", TENANT}
    env = sign_push(key, delta("global", 1, add=["192.0.2.1"]))
    assert open_envelope(key.public_key(), env.SerializeToString(), channels).seq == 1
    with pytest.raises(PushRejected, match="bad signature"):
        open_envelope(Ed25519PrivateKey.generate().public_key(), env.SerializeToString(), channels)
    tampered = push_pb2.SignedEnvelope()
    tampered.CopyFrom(env)
    tampered.payload = tampered.payload.replace(b"192.0.2.1", b"192.0.2.9")
    with pytest.raises(PushRejected, match="bad signature"):
        open_envelope(key.public_key(), tampered.SerializeToString(), channels)
    other = sign_push(key, delta("tenant:other", 1, add=["192.0.2.1"]))
    with pytest.raises(PushRejected, match="not for this gateway"):
        open_envelope(key.public_key(), other.SerializeToString(), channels)
    with pytest.raises(PushRejected, match="exceeds"):
        open_envelope(key.public_key(), b"x" * (MAX_ENVELOPE_BYTES + 1), channels)
    with pytest.raises(PushRejected):
        open_envelope(key.public_key(), b"\xff\x00garbage", channels)
    old = delta("global", 2)
    env_old = sign_push(key, old)
    payload = push_pb2.Push()
    payload.ParseFromString(env_old.payload)
    payload.expires_at_ms = 1
    raw = payload.SerializeToString()
    expired = push_pb2.SignedEnvelope(payload=raw, signature=key.sign(raw))
    with pytest.raises(PushRejected, match="expired"):
        open_envelope(key.public_key(), expired.SerializeToString(), channels)


def test_state_file_round_trip_journal_and_torn_tail(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "state")
    assert store.load(TENANT) is None
    state = DesiredState(TENANT)
    state.apply(push_pb2.Push(channel=TENANT, seq=1, policy=common_pb2.PolicyBundle(version=3)))
    store.save_full(state)
    for seq in range(1, 4):
        push = delta("global", seq, add=[f"192.0.2.{seq}"])
        state.apply(push)
        store.append(state, push)
    # A half-written record at the end (power loss mid-append) is dropped, the rest kept.
    with store.journal_path.open("ab") as fh:
        fh.write(b"\x00\x00\x01\x00partial")
    loaded = StateFile(tmp_path / "state").load(TENANT)
    assert loaded is not None
    assert loaded.versions() == state.versions()
    assert {i.value for i in loaded.live_iocs()} == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    assert loaded.policy.version == 3
    assert oct(store.snapshot_path.stat().st_mode & 0o777) == "0o600"
