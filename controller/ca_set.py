"""The controller's CAs: the current one and, during a rollover, the next one.

A rollover makes a new CA beside the current one. For its overlap the controller trusts client
certificates from both, signs every new gateway certificate (enrollment, renewal) with the new one,
hands gateways both as their trust (GetBrokers, EnrollResponse), and still presents server
certificates (gRPC listeners, the embedded broker) from the old one, so an agent that has not yet
taken the bundle keeps connecting. The first start after the overlap has ended finishes it: the new
CA becomes the current one (its server certificates are re-issued by pki.py, which sees another
issuer), the old one is no longer trusted, and its private key is gone.

Files in the PKI dir: `ca.key`/`ca.crt` (the current CA, as before rollovers existed), and during a
rollover `ca.next.key`/`ca.next.crt`; `ca-rollover.json` says what is under way. Writing the manifest
commits a rollover: new files without it are a crash before the commit (removed; it never happened).
The finish moves the next key, then the next certificate over the current ones and rewrites the
manifest last; a start after a crash between two of those steps completes them. The old certificate
stays as `ca.previous.crt` (public, for `msspctl ca show`).

Controllers sharing a database each keep their own PKI dir: roll over on one, copy its pki/ to the
others and restart them (README), as for the push-signing key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.domain.errors import Conflict, InvalidInput
from controller.pki import CA_NAME, CertificateAuthority, IssuedCertificate, ca_fingerprint
from mssp.common.clock import now_ms
from mssp.common.files import write_atomic

MANIFEST = "ca-rollover.json"
NEXT = "ca.next"  # stem of the next CA's files
PREVIOUS_CERT = "ca.previous.crt"
DEFAULT_OVERLAP_S = 30 * 86400
MAX_OVERLAP_S = 2 * 365 * 86400


@dataclass(frozen=True)
class Rollover:
    next_fingerprint: str
    started_at_ms: int
    overlap_ends_ms: int


@dataclass(frozen=True)
class _State:
    current: CertificateAuthority
    next: CertificateAuthority | None = None
    rollover: Rollover | None = None
    previous: x509.Certificate | None = None
    finished_at_ms: int = 0


class CaSet:
    """Thread-safe: TLS handshakes read the client roots on gRPC's threads, certificates are signed on
    executors, and an operator call begins a rollover; each reads one immutable state."""

    def __init__(self, state: _State, directory: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._state = state
        self.directory = directory
        self.generation = 0  # bumped when the trusted CAs change (the gateway listener reloads them)

    @classmethod
    def of(cls, ca: CertificateAuthority | CaSet) -> CaSet:
        """A set as given, or one CA held in memory (tests and tools pass a bare CA)."""
        return ca if isinstance(ca, CaSet) else cls(_State(ca))

    @classmethod
    def load_or_create(cls, directory: Path, now: int | None = None) -> CaSet:
        """The CAs on disk, after completing what a crash interrupted and finishing an ended overlap."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        manifest = _read_manifest(directory / MANIFEST)
        rollover = _rollover(manifest)
        next_key, next_cert = directory / f"{NEXT}.key", directory / f"{NEXT}.crt"
        if rollover is None:  # a crash before the manifest was written: the rollover never happened
            next_key.unlink(missing_ok=True)
            next_cert.unlink(missing_ok=True)
        elif not next_key.exists():  # a crash in the finish, after the key moved
            _check_moved_key(directory, rollover)
            _finish_files(directory, moved_key=True)
            return cls.load_or_create(directory, now)
        current = CertificateAuthority.load_or_create(directory)
        previous = _previous(directory)
        state = _State(current, previous=previous, finished_at_ms=int(manifest.get("finished_at_ms", 0)))
        if rollover is not None:
            nxt = CertificateAuthority.load(next_key, next_cert)
            if nxt.fingerprint != rollover.next_fingerprint:
                raise RuntimeError(f"{next_cert} is not the CA {directory / MANIFEST} names")
            if (now_ms() if now is None else now) < rollover.overlap_ends_ms:
                return cls(_State(current, nxt, rollover, previous, state.finished_at_ms), directory)
            write_atomic(directory / PREVIOUS_CERT, current.cert_pem)
            _finish_files(directory, moved_key=False)
            return cls.load_or_create(directory, now)
        return cls(state, directory)

    # ---- what the rest of the controller reads ------------------------------------------------

    @property
    def current(self) -> CertificateAuthority:
        """Issues the server certificates; what `ca.crt` holds and what enrollment tokens pin."""
        return self._state.current

    @property
    def next(self) -> CertificateAuthority | None:
        return self._state.next

    @property
    def rollover(self) -> Rollover | None:
        return self._state.rollover

    @property
    def previous(self) -> x509.Certificate | None:
        return self._state.previous

    @property
    def finished_at_ms(self) -> int:
        return self._state.finished_at_ms

    @property
    def signer(self) -> CertificateAuthority:
        """Signs gateway certificates: the next CA during a rollover."""
        state = self._state
        return state.next or state.current

    @property
    def fingerprint(self) -> str:
        return self.current.fingerprint

    @property
    def cert_pem(self) -> bytes:
        """The CA the controller's servers present a chain to (clients of the broker pin it)."""
        return self.current.cert_pem

    @property
    def bundle_pem(self) -> bytes:
        """Every CA a gateway must trust: current first, then the next one."""
        state = self._state
        return state.current.cert_pem + (state.next.cert_pem if state.next else b"")

    @property
    def client_roots_pem(self) -> bytes:
        """The CAs whose client certificates the gateway listener accepts."""
        return self.bundle_pem

    def sign_gateway_csr(self, csr_pem: bytes, **kwargs: object) -> IssuedCertificate:
        return self.signer.sign_gateway_csr(csr_pem, **kwargs)  # type: ignore[arg-type]

    def server_credentials(self, directory: Path, hosts: list[str]) -> tuple[bytes, bytes]:
        return self.current.server_credentials(directory, hosts)

    def broker_credentials(self, directory: Path, hosts: list[str]) -> tuple[Path, Path]:
        return self.current.broker_credentials(directory, hosts)

    # ---- the rollover -------------------------------------------------------------------------

    def begin_rollover(self, overlap_s: int) -> Rollover:
        """Write the next CA, then the manifest (the commit); from then on both are trusted."""
        if not isinstance(overlap_s, int) or not 0 < overlap_s <= MAX_OVERLAP_S:
            raise InvalidInput(f"the overlap must be between 1 s and {MAX_OVERLAP_S} s, got {overlap_s!r}")
        if self.directory is None:
            raise Conflict("this controller's CA is not kept on disk: it cannot roll over")
        with self._lock:
            state = self._state
            if state.rollover is not None:
                raise Conflict("a CA rollover is under way already; it finishes at the first controller "
                               f"start after {_iso(state.rollover.overlap_ends_ms)}")
            for suffix in (".key", ".crt"):  # leftovers of a rollover that never committed
                (self.directory / f"{NEXT}{suffix}").unlink(missing_ok=True)
            now = now_ms()
            name = f"{CA_NAME} {dt.datetime.fromtimestamp(now / 1000, dt.UTC):%Y-%m-%d %H:%M:%S}"
            nxt = CertificateAuthority.load_or_create(self.directory, NEXT, name)
            rollover = Rollover(nxt.fingerprint, now, now + overlap_s * 1000)
            _write_manifest(self.directory / MANIFEST, rollover, state)
            self._state = _State(state.current, nxt, rollover, state.previous, state.finished_at_ms)
            self.generation += 1
            return rollover


def _finish_files(directory: Path, *, moved_key: bool) -> None:
    """The next CA becomes the current one: key, certificate, then the manifest (resumable)."""
    if not moved_key:
        os.replace(directory / f"{NEXT}.key", directory / "ca.key")
    next_cert = directory / f"{NEXT}.crt"
    if next_cert.exists():
        os.replace(next_cert, directory / "ca.crt")
    previous = _previous(directory)
    data = {"next": None, "finished_at_ms": now_ms(),
            "previous_fingerprint": ca_fingerprint(_pem(previous)) if previous is not None else ""}
    write_atomic(directory / MANIFEST, json.dumps(data, indent=2).encode())


def _check_moved_key(directory: Path, rollover: Rollover) -> None:
    """ca.key must be the next CA's key (moved by the finish), not a lost next key."""
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    next_cert = directory / f"{NEXT}.crt"
    cert_path = next_cert if next_cert.exists() else directory / "ca.crt"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if ca_fingerprint(_pem(cert)) != rollover.next_fingerprint or cert.public_key() != key.public_key():
        raise RuntimeError(f"{directory / f'{NEXT}.key'} is missing and ca.key is not the next CA's key: "
                           "the PKI dir is damaged (restore it from a backup)")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _previous(directory: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate((directory / PREVIOUS_CERT).read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise RuntimeError(f"{directory / PREVIOUS_CERT} does not load: {exc}") from exc


def _read_manifest(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise RuntimeError(f"{path} is not a CA rollover record")
    return data


def _rollover(manifest: dict[str, object]) -> Rollover | None:
    raw = manifest.get("next")
    if raw is None:
        return None
    try:
        return Rollover(**raw)  # type: ignore[arg-type]
    except TypeError as exc:
        raise RuntimeError(f"{MANIFEST} is not a CA rollover record: {exc}") from exc


def _write_manifest(path: Path, rollover: Rollover, state: _State) -> None:
    previous = ca_fingerprint(_pem(state.previous)) if state.previous is not None else ""
    data = {"next": asdict(rollover), "finished_at_ms": state.finished_at_ms,
            "previous_fingerprint": previous}
    write_atomic(path, json.dumps(data, indent=2).encode())


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")
