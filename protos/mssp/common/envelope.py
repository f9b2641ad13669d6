"""Signed push envelopes: the controller signs (Ed25519), the agent verifies before it parses.

The signature covers the exact payload bytes; a push carries its own expiry (freeze protection).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mssp.common.clock import now_ms
from mssp.common.keyring import KeyRing, UntrustedKey, key_id
from mssp.common.parts import MAX_ENVELOPE_BYTES, split_push
from mssp.v1 import push_pb2

# MAX_ENVELOPE_BYTES (the largest envelope an agent accepts) is NATS' default max_payload, 1 MiB.
# How long a signed push stays valid; older pushes are refused (freeze protection).
PUSH_LIFETIME_MS = 24 * 3600 * 1000


class PushRejected(Exception):
    """A push that must not be applied: bad signature, wrong channel, expired, oversized."""


class PushExpired(PushRejected):
    """Past its expiry by the time given: a replay, or a router whose clock is far off."""


class UnknownSigner(PushRejected):
    """Signed by a key the agent does not trust (yet): a rotation it missed, or a retired key."""


Verifier = Ed25519PublicKey | KeyRing


def sign_push(key: Ed25519PrivateKey, push: push_pb2.Push) -> push_pb2.SignedEnvelope:
    """Stamp issue/expiry times and sign; the signature covers the exact payload bytes."""
    issued = now_ms()
    push.issued_at_ms = issued
    push.expires_at_ms = issued + PUSH_LIFETIME_MS
    payload = push.SerializeToString()
    raw_pub = key.public_key().public_bytes_raw()
    return push_pb2.SignedEnvelope(payload=payload, signature=key.sign(payload), key_id=key_id(raw_pub))


def sign_split(
    key: Ed25519PrivateKey, push: push_pb2.Push, max_envelope: int = MAX_ENVELOPE_BYTES
) -> list[push_pb2.SignedEnvelope]:
    """The push's envelopes: one, or one per part when it is too large for one broker message.
    Raises mssp.common.parts.PushTooLarge when even parts cannot carry it (it goes by resync)."""
    return [sign_push(key, part) for part in split_push(push, max_envelope)]


def open_envelope(
    public_key: Verifier, data: bytes, allowed_channels: set[str], *, now: int | None = None
) -> push_pb2.Push:
    """Verify before parsing the content; refuse pushes for channels this gateway does not follow."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise PushRejected(f"envelope of {len(data)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    envelope = push_pb2.SignedEnvelope()
    try:
        envelope.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, but be strict about garbage
        raise PushRejected("malformed envelope") from exc
    return open_signed(public_key, envelope, allowed_channels, now=now)


def open_signed(
    public_key: Verifier, envelope: push_pb2.SignedEnvelope, allowed_channels: set[str], *,
    now: int | None = None,
) -> push_pb2.Push:
    """With a KeyRing, the key the envelope names (key_id) must be in it and not retired. Expiry and
    retirement are judged at `now` (default: this machine's clock; the agent's may be far off)."""
    now = now_ms() if now is None else now
    if isinstance(public_key, KeyRing):
        try:
            public_key = public_key.verifier(envelope.key_id, now)
        except UntrustedKey as exc:
            raise UnknownSigner(str(exc)) from exc
    try:
        public_key.verify(envelope.signature, envelope.payload)
    except InvalidSignature as exc:
        raise PushRejected("bad signature") from exc
    push = push_pb2.Push()
    try:
        push.ParseFromString(envelope.payload)
    except Exception as exc:
        raise PushRejected("malformed push payload") from exc
    if push.channel not in allowed_channels:
        raise PushRejected(f"push for channel {push.channel!r} is not for this gateway")
    if push.expires_at_ms and push.expires_at_ms < now:
        raise PushExpired(f"push {push.channel}#{push.seq} expired")
    return push
