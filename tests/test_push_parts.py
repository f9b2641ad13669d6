"""Multi-part pushes (mssp.common.parts) and the agent's state rules for them; the Sync rate limit."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.ratelimit import KeyedRateLimiter, RateLimited
from gateway_agent.state import DesiredState, Gap, Stale
from mssp.common.envelope import open_envelope, sign_split
from mssp.common.parts import (
    MAX_ENVELOPE_BYTES,
    MAX_PUSH_PARTS,
    PartAssembler,
    PartError,
    PushTooLarge,
    split_push,
)
from mssp.v1 import common_pb2, push_pb2

TENANT = "tenant:t1"
SMALL_LIMIT = 16 * 1024  # a small broker limit keeps the pushes in these tests small


def big_delta(channel: str, seq: int, count: int, tag: str = "a") -> push_pb2.Push:
    iocs = [common_pb2.Ioc(type=common_pb2.IOC_TYPE_DOMAIN, value=f"{tag}{i:06d}.bulk.example")
            for i in range(count)]
    return push_pb2.Push(channel=channel, seq=seq, iocs=push_pb2.IocDelta(upsert=iocs))


def test_split_fits_the_limit_and_reassembles_to_the_same_push() -> None:
    push = big_delta("global", 1, 3000)
    parts = split_push(push, SMALL_LIMIT)
    assert len(parts) > 2
    key = Ed25519PrivateKey.generate()
    envelopes = [e.SerializeToString() for e in sign_split(key, push, SMALL_LIMIT)]
    assert all(len(e) <= SMALL_LIMIT for e in envelopes)
    assembler = PartAssembler()
    opened = [open_envelope(key.public_key(), e, {"global"}) for e in envelopes]
    assert [assembler.add(p) for p in opened[:-1]] == [None] * (len(opened) - 1)
    assert assembler.add(opened[-1]) == push
    assert assembler.buffered_bytes == 0
    small = big_delta("global", 2, 3)
    assert split_push(small, SMALL_LIMIT) == [small]  # fits: sent as is


def test_a_push_beyond_the_part_limit_is_refused_by_the_splitter() -> None:
    limit = 16 * 1024
    per_part = limit - 4096
    push = push_pb2.Push(channel="global", seq=1, iocs=push_pb2.IocDelta(upsert=[common_pb2.Ioc(
        type=common_pb2.IOC_TYPE_DOMAIN, value="x", source="s" * (per_part * MAX_PUSH_PARTS + 1))]))
    with pytest.raises(PushTooLarge, match="parts"):
        split_push(push, limit)
    assert len(split_push(push, MAX_ENVELOPE_BYTES)) == 1


def test_agent_applies_a_multi_part_delta_once_after_the_last_part() -> None:
    state = DesiredState(TENANT)
    push = big_delta("global", 1, 2000)
    parts = split_push(push, SMALL_LIMIT)
    for part in parts[:-1]:
        assert state.apply(part) is None
        assert state.ioc_count() == 0 and state.versions().global_seq == 0
    change = state.apply(parts[-1])
    assert change is not None and len(change.added) == 2000 and change.push == push
    assert state.ioc_count() == 2000 and state.versions().global_seq == 1
    with pytest.raises(Stale):  # the same push again (late duplicate parts)
        for part in parts:
            state.apply(part)


def test_missing_parts_mean_a_gap_and_a_newer_seq_discards_the_buffer() -> None:
    state = DesiredState(TENANT)
    one = split_push(big_delta("global", 1, 2000), SMALL_LIMIT)
    assert state.apply(one[0]) is None
    with pytest.raises(Gap, match="without the parts before it"):
        state.apply(one[2])  # part 1 was lost
    # Part 0 of a newer seq replaces whatever was buffered (bounded to one push per channel).
    two = split_push(big_delta("global", 2, 2000, tag="b"), SMALL_LIMIT)
    assert state.apply(one[0]) is None
    assert state.apply(two[0]) is None
    assert state._parts.buffered_seq("global") == 2
    with pytest.raises(Gap):
        state.apply(one[1])
    assert state._parts.buffered_seq("global") is None
    assert state.ioc_count() == 0


def test_parts_of_two_pushes_with_one_seq_cannot_be_mixed() -> None:
    """A delta and a snapshot may share a seq; the digest keeps their pieces apart."""
    delta = split_push(big_delta(TENANT, 1, 2000), SMALL_LIMIT)
    snap = split_push(push_pb2.Push(channel=TENANT, seq=1, snapshot=push_pb2.SnapshotPart(
        index=0, last=True, iocs=list(big_delta(TENANT, 1, 2000, tag="z").iocs.upsert))), SMALL_LIMIT)
    assembler = PartAssembler()
    assert assembler.add(delta[0]) is None
    with pytest.raises(PartError):
        assembler.add(snap[1])
    forged = push_pb2.Push()
    forged.CopyFrom(delta[-1])
    forged.part.data = b"\x00" + forged.part.data[1:]
    for part in delta[:-1]:
        assembler.add(part)
    with pytest.raises(PartError, match="digest"):
        assembler.add(forged)


def test_assembler_buffer_is_bounded() -> None:
    assembler = PartAssembler(max_bytes=20_000)
    parts = split_push(big_delta("global", 1, 3000), SMALL_LIMIT)
    assembler.add(parts[0])
    with pytest.raises(PartError, match="exceed"):
        assembler.add(parts[1])
    assert assembler.buffered_bytes == 0
    too_many = push_pb2.Push(channel="global", seq=1, part=push_pb2.PushPart(
        index=0, count=MAX_PUSH_PARTS + 1, digest=b"\x00" * 32, data=b"x"))
    with pytest.raises(PartError, match="out of range"):
        assembler.add(too_many)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [100.0]
    limiter = KeyedRateLimiter(burst=3, per_second=0.5, what="resyncs", clock=lambda: now[0])
    for _ in range(3):
        limiter.take("gw1")
    with pytest.raises(RateLimited, match=r"too many resyncs.*retry in 2\.0s"):
        limiter.take("gw1")
    limiter.take("gw2")  # per gateway
    now[0] += 2.0
    limiter.take("gw1")
    with pytest.raises(RateLimited):
        limiter.take("gw1")
