"""The controller's certificate authority, its gRPC server certificate and the push-signing key.

Made on first start in the data dir; private keys are written with mode 0600. Gateway client
certificates are issued from CSRs: the gateway's private key never leaves the router.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.domain.errors import InvalidInput
from mssp.common.files import write_atomic, write_private

CA_VALIDITY = dt.timedelta(days=3650)
CA_NAME = "MSSP controller CA"
SERVER_VALIDITY = dt.timedelta(days=825)
CLIENT_VALIDITY = dt.timedelta(days=397)
MAX_CSR_BYTES = 16 * 1024

log = logging.getLogger(__name__)


def pem_private_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ca_fingerprint(ca_pem: bytes) -> str:
    """SHA-256 of the CA certificate (DER): what enrollment tokens pin."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class IssuedCertificate:
    cert_pem: bytes
    serial_hex: str
    not_after: dt.datetime
    not_before: dt.datetime

    @property
    def validity_ms(self) -> tuple[int, int]:
        return int(self.not_before.timestamp() * 1000), int(self.not_after.timestamp() * 1000)


def backdate(validity: dt.timedelta) -> dt.timedelta:
    """How far before now a certificate starts (clock skew): 5 minutes, or a tenth of a short lifetime,
    so that agents renewing at 60-70% of not_before..not_after do not renew at once."""
    return min(dt.timedelta(minutes=5), validity / 10)


class CertificateAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.fingerprint = ca_fingerprint(self.cert_pem)

    @classmethod
    def load_or_create(
        cls, directory: Path, stem: str = "ca", common_name: str = CA_NAME
    ) -> CertificateAuthority:
        """`stem`.key and `stem`.crt in `directory` (ca_set.py keeps a rollover's next CA beside it)."""
        key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.crt"
        if key_path.exists() and cert_path.exists():
            return cls.load(key_path, cert_path)
        return cls._create(key_path, cert_path, common_name)

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> CertificateAuthority:
        # Never re-issued on its own: every enrolled gateway pins this CA. Damage is an error.
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{key_path} or {cert_path} does not load: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise RuntimeError(f"{key_path} is not an EC private key")
        if key.public_key() != cert.public_key():
            raise RuntimeError(f"{key_path} is not the key of the CA certificate {cert_path}")
        return cls(key, cert)

    @classmethod
    def _create(cls, key_path: Path, cert_path: Path, common_name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, pem_private_key(key))
        write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert)

    def _builder(
        self, subject: x509.Name, public_key: object, validity: dt.timedelta
    ) -> x509.CertificateBuilder:
        now = _now()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - backdate(validity))
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )

    def server_credentials(self, directory: Path, hosts: list[str]) -> tuple[bytes, bytes]:
        """(key PEM, chain PEM) for the gRPC servers; reissued when the host list changes."""
        key_path, cert_path = self._server_files(directory, "server", "mssp-controller", hosts)
        return key_path.read_bytes(), cert_path.read_bytes()

    def broker_credentials(self, directory: Path, hosts: list[str]) -> tuple[Path, Path]:
        """(key file, chain file) for nats-server's TLS: agents pin this CA, so the broker's
        certificate must chain to it. nats-server reads files, hence paths."""
        return self._server_files(directory, "nats-server", "mssp-nats", hosts)

    def _server_files(
        self, directory: Path, stem: str, common_name: str, hosts: list[str]
    ) -> tuple[Path, Path]:
        """A server certificate with `hosts` as SANs, kept while both files parse, the key is the
        certificate's, and the SANs, the issuer and 30 days of validity still hold; re-issued (and
        logged why) otherwise."""
        if not hosts:
            raise InvalidInput(f"{stem} certificate needs at least one host name or address")
        key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.crt"
        if key_path.exists() or cert_path.exists():
            why = self._unusable(key_path, cert_path, hosts)
            if why is None:
                return key_path, cert_path
            log.warning("re-issuing the %s certificate (%s): %s", stem, cert_path, why)
        key = ec.generate_private_key(ec.SECP256R1())
        alt_names: list[x509.GeneralName] = []
        for host in dict.fromkeys(hosts):
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        cert = (
            self._builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
                key.public_key(),
                SERVER_VALIDITY,
            )
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        # The chain includes the CA so a first-contact agent can check it against its token's pin.
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem
        # Each file is replaced whole; the certificate goes last, so a crash in between leaves a new
        # key with the old certificate, which _unusable sees as a mismatch on the next start.
        write_private(key_path, pem_private_key(key))
        write_atomic(cert_path, chain)
        return key_path, cert_path

    def _unusable(self, key_path: Path, cert_path: Path, hosts: list[str]) -> str | None:
        """Why the stored pair cannot be kept, or None when it can."""
        try:
            chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:  # missing, torn or not PEM
            return f"key or certificate does not load ({type(exc).__name__}: {exc})"
        current = chain[0]
        if chain[1:] != [self.cert]:  # first-contact agents check the CA in the chain against their pin
            return "the certificate file does not hold the certificate followed by this CA"
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != current.public_key():
            return "the private key does not match the certificate"
        try:
            san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return "the certificate has no subject alternative names"
        names = {str(v) for v in san.get_values_for_type(x509.DNSName)}
        names |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        if names != {_normal_host(h) for h in hosts}:
            return f"its names {sorted(names)} are not the configured hosts {sorted(set(hosts))}"
        if current.not_valid_after_utc - _now() <= dt.timedelta(days=30):
            return f"it expires on {current.not_valid_after_utc:%Y-%m-%d}"
        if not self._issued(current):
            return "it was not issued by this CA"
        return None

    def _issued(self, cert: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def sign_gateway_csr(
        self, csr_pem: bytes, *, tenant_id: str, gateway_id: str, validity: dt.timedelta = CLIENT_VALIDITY
    ) -> IssuedCertificate:
        """Only the CSR's public key is used: the identity is ours to set, never the requester's."""
        public_key = load_gateway_csr(csr_pem).public_key()
        cert = (
            self._builder(
                x509.Name([
                    x509.NameAttribute(NameOID.COMMON_NAME, gateway_id),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, tenant_id),
                ]),
                public_key,
                validity,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"urn:mssp:tenant:{tenant_id}:gateway:{gateway_id}")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCertificate(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            serial_hex=format(cert.serial_number, "x"),
            not_after=cert.not_valid_after_utc,
            not_before=cert.not_valid_before_utc,
        )


def load_gateway_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """Checked before an enrollment token is spent, so a bad CSR changes nothing."""
    if not csr_pem or len(csr_pem) > MAX_CSR_BYTES:
        raise InvalidInput("certificate signing request is empty or too large")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise InvalidInput("certificate signing request is not a valid PEM CSR") from exc
    if not csr.is_signature_valid:
        raise InvalidInput("certificate signing request signature is invalid")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != "secp256r1":
        raise InvalidInput("certificate signing request must use an EC P-256 key")
    return csr


def _normal_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def load_or_create_signing_key(path: Path) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 key that signs every push; agents get its public half at enrollment."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise RuntimeError(f"{path} is not an Ed25519 private key")
        return key
    key = ed25519.Ed25519PrivateKey.generate()
    write_private(path, pem_private_key(key))
    return key


def serial_of_pem(cert_pem: bytes) -> str:
    return format(x509.load_pem_x509_certificate(cert_pem).serial_number, "x")
