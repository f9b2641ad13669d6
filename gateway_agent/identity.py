"""What an enrolled agent keeps in its state dir: keys, certificates, NATS credentials, endpoints.

Private keys are made here, on the router, written 0600, and never sent anywhere.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nkeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway_agent.errors import AgentError
from mssp.common.files import write_private
from mssp.common.keyring import KeyRing

IDENTITY_FILE = "identity.json"
# nats.creds has two writers, a re-issued JWT (following.py: read, then write beside the seed) and a
# renewal (renewal.py: a new seed): taken by each, so a renewal's seed is never overwritten by the old.
CREDS_LOCK = threading.Lock()


class NotEnrolled(AgentError):
    pass


def make_tls_key_and_csr() -> tuple[bytes, bytes]:
    """(private key PEM, CSR PEM). The subject is a placeholder: the controller sets the identity."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mssp-gateway")]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def make_nats_user_seed() -> tuple[bytes, str]:
    """(seed, public key) of a NATS user nkey."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed, nkeys.from_seed(seed).public_key.decode()


@dataclass
class AgentIdentity:
    state_dir: Path
    tenant_id: str
    tenant_name: str
    gateway_id: str
    gateway_name: str
    controller: str
    gateway_endpoint: str
    nats_urls: list[str]
    signing_public_key_hex: str
    tls_server_name: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    # The push-signing keys trusted since a rotation (mssp.common.keyring); empty: only the one
    # enrollment gave (signing_public_key_hex).
    signing_keys: list[dict[str, object]] = field(default_factory=list)
    signing_keys_at_ms: int = 0

    @property
    def tenant_channel(self) -> str:
        return f"tenant:{self.tenant_id}"

    @property
    def label(self) -> str:
        return f"{self.tenant_name}/{self.gateway_name}"

    @property
    def key_path(self) -> Path:
        return self.state_dir / "tls.key"

    @property
    def cert_path(self) -> Path:
        return self.state_dir / "tls.crt"

    @property
    def ca_path(self) -> Path:
        return self.state_dir / "ca.crt"

    @property
    def creds_path(self) -> Path:
        return self.state_dir / "nats.creds"

    def keyring(self) -> KeyRing:
        if self.signing_keys:
            return KeyRing.from_json(self.signing_keys, self.signing_keys_at_ms)
        return KeyRing.single(bytes.fromhex(self.signing_public_key_hex))

    def trust(self, ring: KeyRing) -> None:
        """Keep `ring` (saved by the caller)."""
        self.signing_keys, self.signing_keys_at_ms = ring.to_json(), ring.issued_at_ms

    def save(self) -> None:
        data = asdict(self)
        data.pop("state_dir")
        write_private(self.state_dir / IDENTITY_FILE, json.dumps(data, indent=2).encode())

    @classmethod
    def load(cls, state_dir: Path) -> AgentIdentity:
        path = state_dir / IDENTITY_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise NotEnrolled(f"{state_dir} holds no enrollment; run `mssp-agent enroll` first") from exc
        except (OSError, ValueError) as exc:
            raise NotEnrolled(f"{path} is unreadable: {exc}") from exc
        return cls(state_dir=state_dir, **data)

    @staticmethod
    def exists(state_dir: Path) -> bool:
        return (state_dir / IDENTITY_FILE).exists()
