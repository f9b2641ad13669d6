"""The push-signing keys an agent trusts, so that the controller can rotate its key.

A small set, keyed by key id (the envelope names the key that signed it). A key past its retirement
is refused whatever the push says about its own time: a retired private key may have leaked. A set
is adopted only from the controller over pinned mTLS (GetBrokers), never from a push: during an
overlap the retiring key still verifies, and whoever held it (with the broker) could otherwise
announce a set of their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mssp.common.clock import now_ms
from mssp.v1 import common_pb2

MAX_KEYS = 8  # a rotation adds one; more than a handful is a malformed or hostile set


class UntrustedKey(Exception):
    """The envelope names a key this ring does not hold, or one that has retired."""


@dataclass(frozen=True)
class Trusted:
    public_raw: bytes
    retires_at_ms: int = 0  # 0: not retiring


def key_id(public_key_raw: bytes) -> str:
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


class KeyRing:
    def __init__(self, keys: Iterable[Trusted], issued_at_ms: int = 0) -> None:
        self.keys = {key_id(k.public_raw): k for k in keys}
        self.issued_at_ms = issued_at_ms
        self._verifiers = {kid: Ed25519PublicKey.from_public_bytes(k.public_raw)
                           for kid, k in self.keys.items()}

    @classmethod
    def single(cls, public_raw: bytes) -> KeyRing:
        return cls([Trusted(public_raw)])

    def verifier(self, kid: str, now: int | None = None) -> Ed25519PublicKey:
        key = self.keys.get(kid)
        if key is None:
            raise UntrustedKey(f"signed by unknown key {kid!r}")
        if key.retires_at_ms and (now_ms() if now is None else now) >= key.retires_at_ms:
            raise UntrustedKey(f"signed by key {kid}, retired since {key.retires_at_ms}")
        return self._verifiers[kid]

    @classmethod
    def of(cls, announced: common_pb2.SigningKeys) -> KeyRing | None:
        """The ring `announced` describes, None when it is malformed (empty, too many, bad keys)."""
        if not 1 <= len(announced.keys) <= MAX_KEYS:
            return None
        if any(len(k.public_key) != 32 or k.retires_at_ms < 0 for k in announced.keys):
            return None
        keys = [Trusted(k.public_key, k.retires_at_ms) for k in announced.keys]
        return cls(keys, announced.issued_at_ms)

    def to_json(self) -> list[dict[str, object]]:
        return [{"public": k.public_raw.hex(), "retires_at_ms": k.retires_at_ms} for k in self.keys.values()]

    @classmethod
    def from_json(cls, items: list[dict[str, object]], issued_at_ms: int) -> KeyRing:
        return cls([Trusted(bytes.fromhex(str(i["public"])), int(str(i.get("retires_at_ms", 0))))
                    for i in items], issued_at_ms)
