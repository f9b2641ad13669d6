"""The push-signing keys: the one that signs now, and the ones gateways still trust for a while.

A rotation makes a new key, announces the new set in a push signed by the current key (agents
trust a key the current one vouches for), and only then signs with the new key. The old key stays
trusted until its retirement (the overlap), after which agents refuse what it signs; its private
half is deleted at the switch, since nothing here signs with it again. Agents that missed the
announcement get the set over mTLS with GetBrokers.

Files in the PKI dir: `signing.key` (the active key, as before rotation existed), `signing-keys.json`
(the trusted set), and `signing.next.key` only while a rotation is under way. Each step is one
atomic file write, so a crash at any point leaves the old key active (the rotation never happened)
or the new set written, which the next start completes.

Controllers sharing a database each keep their own files: a rotation is made on one and its PKI
dir copied to the others (documented in the README), as for the CA.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.domain.errors import Conflict, InvalidInput
from controller.pki import load_or_create_signing_key, pem_private_key
from mssp.common.clock import now_ms
from mssp.common.envelope import key_id
from mssp.common.files import write_atomic, write_private
from mssp.v1 import common_pb2

MANIFEST = "signing-keys.json"
ACTIVE = "signing.key"
NEXT = "signing.next.key"
MAX_OVERLAP_S = 365 * 86400


@dataclass(frozen=True)
class SigningKeyInfo:
    key_id: str
    public_hex: str
    created_at_ms: int
    retires_at_ms: int = 0  # 0: not retiring


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


class SigningKeys:
    """Thread-safe: pushes are signed on executors while an operator call rotates."""

    def __init__(self, active: Ed25519PrivateKey, known: list[SigningKeyInfo], issued_at_ms: int,
                 directory: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._active = active
        self._known = known
        self.issued_at_ms = issued_at_ms
        self.directory = directory
        self._rotating = False

    @classmethod
    def of(cls, key: Ed25519PrivateKey | SigningKeys) -> SigningKeys:
        """A key set as given, or one key held in memory (tests and tools pass a bare key)."""
        return key if isinstance(key, SigningKeys) else cls.fixed(key)

    @classmethod
    def fixed(cls, key: Ed25519PrivateKey) -> SigningKeys:
        """One key, kept in memory only (tests and tools)."""
        raw = _raw(key)
        return cls(key, [SigningKeyInfo(key_id(raw), raw.hex(), now_ms())], 0)

    @classmethod
    def load_or_create(cls, directory: Path) -> SigningKeys:
        active = load_or_create_signing_key(directory / ACTIVE)
        known, issued = _read_manifest(directory / MANIFEST)
        next_path = directory / NEXT
        if next_path.exists():
            pending = load_or_create_signing_key(next_path)
            if any(k.key_id == key_id(_raw(pending)) for k in known):  # the set was written: complete it
                os.replace(next_path, directory / ACTIVE)
                active = pending
            else:  # the crash came before the set was written: the rotation never happened
                next_path.unlink()
        now, raw = now_ms(), _raw(active)
        known = [k for k in known if not k.retires_at_ms or k.retires_at_ms > now]
        if not any(k.key_id == key_id(raw) for k in known):
            known.insert(0, SigningKeyInfo(key_id(raw), raw.hex(), now))
        return cls(active, known, issued, directory)

    @property
    def active(self) -> Ed25519PrivateKey:
        with self._lock:
            return self._active

    def infos(self) -> list[SigningKeyInfo]:
        """Newest first."""
        with self._lock:
            return sorted(self._known, key=lambda k: -k.created_at_ms)

    def trusted(self) -> common_pb2.SigningKeys:
        """The set as gateways receive it (the announcement and GetBrokers)."""
        now = now_ms()
        with self._lock:
            keys = [common_pb2.TrustedKey(public_key=bytes.fromhex(k.public_hex),
                                          retires_at_ms=k.retires_at_ms)
                    for k in self._known if not k.retires_at_ms or k.retires_at_ms > now]
            return common_pb2.SigningKeys(keys=keys, issued_at_ms=self.issued_at_ms)

    def begin_rotation(self, overlap_s: int) -> tuple[Ed25519PrivateKey, Ed25519PrivateKey]:
        """Write the new key and the new trusted set; (current key, new key). The caller announces
        the set signed by the current key, then calls finish_rotation."""
        if not isinstance(overlap_s, int) or not 0 <= overlap_s <= MAX_OVERLAP_S:
            raise InvalidInput(f"the overlap must be between 0 s and {MAX_OVERLAP_S} s, got {overlap_s!r}")
        new = Ed25519PrivateKey.generate()
        now = now_ms()
        with self._lock:
            old, old_id = self._active, key_id(_raw(self._active))
            known = [SigningKeyInfo(k.key_id, k.public_hex, k.created_at_ms,
                                    now + overlap_s * 1000 if k.key_id == old_id else k.retires_at_ms)
                     for k in self._known if not k.retires_at_ms or k.retires_at_ms > now]
            known.insert(0, SigningKeyInfo(key_id(_raw(new)), _raw(new).hex(), now))
            issued = max(now, self.issued_at_ms + 1)
            if self._rotating:
                raise Conflict("a signing key rotation is under way; try again in a moment")
            if self.directory is not None:
                write_private(self.directory / NEXT, pem_private_key(new))
                _write_manifest(self.directory / MANIFEST, known, issued)
            self._known, self.issued_at_ms, self._rotating = known, issued, True
        return old, new

    def finish_rotation(self, new: Ed25519PrivateKey) -> None:
        """From now on `new` signs; the old private key is gone from disk."""
        with self._lock:
            if self.directory is not None:
                os.replace(self.directory / NEXT, self.directory / ACTIVE)
            self._active = new
            self._rotating = False


def _read_manifest(path: Path) -> tuple[list[SigningKeyInfo], int]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return [], 0
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path} is unreadable: {exc}") from exc
    try:
        return [SigningKeyInfo(**k) for k in data["keys"]], int(data["issued_at_ms"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RuntimeError(f"{path} is not a signing key set: {exc}") from exc


def _write_manifest(path: Path, known: list[SigningKeyInfo], issued_at_ms: int) -> None:
    data = {"issued_at_ms": issued_at_ms, "keys": [asdict(k) for k in known]}
    write_atomic(path, json.dumps(data, indent=2).encode())
