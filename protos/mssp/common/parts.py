"""Multi-part pushes: one version (channel + seq) too large for one broker message, sent in pieces.

The controller splits the serialized push into `PushPart`s that each fit the broker's payload limit
(`split_push`); every part is signed on its own. The agent buffers the parts of one seq and gets the
inner push back only when the last part has arrived and the digest matches (`PartAssembler`), so a
large change is applied once and whole, never half. The mechanism knows nothing about the body: IOC
deltas, policies, snapshot parts and later kinds of push all travel the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from mssp.v1 import push_pb2

# NATS' default max_payload; the agent refuses larger envelopes.
MAX_ENVELOPE_BYTES = 1024 * 1024
# Bytes of a part's envelope that are not data: signature, key id, channel, seq, stamps, part header.
ENVELOPE_HEADROOM = 4096
# Largest serialized push that travels as one envelope.
MAX_SINGLE_PUSH_BYTES = MAX_ENVELOPE_BYTES - ENVELOPE_HEADROOM
# Parts one push may take, and so the largest push any channel carries (~16 MiB). A larger push is
# not published: agents learn of its seq from the next push or beacon and resync (a snapshot).
MAX_PUSH_PARTS = 16
MAX_PUSH_BYTES = MAX_PUSH_PARTS * MAX_SINGLE_PUSH_BYTES
# A policy bundle must fit one envelope whole, with room for the push around it.
MAX_POLICY_BUNDLE_BYTES = MAX_ENVELOPE_BYTES - 64 * 1024

_DIGEST_BYTES = 32


class PushTooLarge(Exception):
    """The push needs more than MAX_PUSH_PARTS parts: it can only reach agents by resync."""


class PartError(Exception):
    """Parts that cannot be assembled (missing, out of order, mixed, corrupt): resync."""


def piece_size(max_envelope: int) -> int:
    """Data bytes per part for a broker whose payload limit is `max_envelope`."""
    size = min(max_envelope, MAX_ENVELOPE_BYTES) - ENVELOPE_HEADROOM
    if size < ENVELOPE_HEADROOM:
        raise ValueError(f"a payload limit of {max_envelope} bytes is too small for pushes")
    return size


def parts_needed(payload_bytes: int, max_envelope: int = MAX_ENVELOPE_BYTES) -> int:
    """How many envelopes a serialized push of `payload_bytes` takes (1 when it fits whole)."""
    size = piece_size(max_envelope)
    return 1 if payload_bytes <= size else -(-payload_bytes // size)


def split_push(push: push_pb2.Push, max_envelope: int = MAX_ENVELOPE_BYTES) -> list[push_pb2.Push]:
    """The push itself when it fits one envelope, else its parts (same channel and seq)."""
    if push.WhichOneof("body") == "part":
        raise ValueError("a push part cannot be split again")
    data = push.SerializeToString(deterministic=True)
    count = parts_needed(len(data), max_envelope)
    if count == 1:
        return [push]
    if count > MAX_PUSH_PARTS:
        raise PushTooLarge(
            f"push {push.channel}#{push.seq} is {len(data)} bytes and would need {count} parts "
            f"(at most {MAX_PUSH_PARTS}, {MAX_PUSH_BYTES} bytes)"
        )
    size = piece_size(max_envelope)
    digest = hashlib.sha256(data).digest()
    return [
        push_pb2.Push(channel=push.channel, seq=push.seq, part=push_pb2.PushPart(
            index=index, count=count, digest=digest, data=data[index * size : (index + 1) * size]))
        for index in range(count)
    ]


@dataclass
class _Buffer:
    seq: int
    count: int
    digest: bytes
    pieces: list[bytes] = field(default_factory=list)
    size: int = 0


class PartAssembler:
    """Collects the parts of one seq per channel. At most one push per channel is buffered, of at
    most `max_bytes`: part 0 always starts afresh (a newer seq, or a resync re-sending the same one,
    discards what was there) and anything that does not continue the buffer discards it."""

    def __init__(self, *, max_parts: int = MAX_PUSH_PARTS, max_bytes: int = MAX_PUSH_BYTES) -> None:
        self.max_parts = max_parts
        self.max_bytes = max_bytes
        self._buffers: dict[str, _Buffer] = {}

    @property
    def buffered_bytes(self) -> int:
        return sum(b.size for b in self._buffers.values())

    def buffered_seq(self, channel: str) -> int | None:
        buf = self._buffers.get(channel)
        return None if buf is None else buf.seq

    def discard(self, channel: str) -> None:
        self._buffers.pop(channel, None)

    def discard_through(self, channel: str, seq: int) -> None:
        """Forget a buffered push the channel has already moved past (it came another way)."""
        buf = self._buffers.get(channel)
        if buf is not None and buf.seq <= seq:
            del self._buffers[channel]

    def add(self, push: push_pb2.Push) -> push_pb2.Push | None:
        """The inner push once its last part is in; None while parts are missing."""
        part = push.part
        if not 1 < part.count <= self.max_parts or part.index >= part.count:
            self.discard(push.channel)
            raise PartError(f"{push.channel}#{push.seq}: part {part.index} of {part.count} is out of range "
                            f"(at most {self.max_parts} parts)")
        if len(part.digest) != _DIGEST_BYTES:
            self.discard(push.channel)
            raise PartError(f"{push.channel}#{push.seq}: part without a valid digest")
        if part.index == 0:
            buf = self._buffers[push.channel] = _Buffer(push.seq, part.count, part.digest)
        else:
            buf = self._buffers.get(push.channel)
            if buf is None or (buf.seq, buf.count, buf.digest) != (push.seq, part.count, part.digest) \
                    or part.index != len(buf.pieces):
                self.discard(push.channel)
                raise PartError(f"{push.channel}#{push.seq}: part {part.index} of {part.count} arrived "
                                "without the parts before it")
        if buf.size + len(part.data) > self.max_bytes:
            self.discard(push.channel)
            raise PartError(f"{push.channel}#{push.seq}: parts exceed {self.max_bytes} bytes")
        buf.pieces.append(part.data)
        buf.size += len(part.data)
        if len(buf.pieces) < buf.count:
            return None
        del self._buffers[push.channel]
        return _inner(push, b"".join(buf.pieces), buf.digest)


def _inner(last: push_pb2.Push, data: bytes, digest: bytes) -> push_pb2.Push:
    where = f"{last.channel}#{last.seq}"
    if hashlib.sha256(data).digest() != digest:
        raise PartError(f"{where}: assembled parts do not match their digest")
    inner = push_pb2.Push()
    try:
        inner.ParseFromString(data)
    except Exception as exc:  # DecodeError; be strict about anything else too
        raise PartError(f"{where}: assembled parts are not a push") from exc
    if (inner.channel, inner.seq) != (last.channel, last.seq):
        raise PartError(f"{where}: parts carry {inner.channel}#{inner.seq}")
    if inner.WhichOneof("body") in (None, "part"):
        raise PartError(f"{where}: assembled push has no applicable body")
    return inner
