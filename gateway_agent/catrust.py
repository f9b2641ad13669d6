"""Following a CA rollover: the CAs the agent trusts come from GetBrokers, and a certificate from a
CA being replaced is renewed at once.

The answer is the controller's word only because it came over the mTLS channel, verified with the
CAs held now; even so a bundle is taken only when it shares a CA with what is held (one answer never
swaps the trust anchor outright) and is made of well-formed self-signed CA certificates. ca.crt is
replaced whole (write_atomic), so a crash leaves the old trust or the new, never a torn file; the
gRPC channel and the NATS client's TLS context are renewed with it. When the CA that signs gateway
certificates now is not the one ours is from, the renewal runs now instead of at 60-70% of the
lifetime: the router must be on the new CA before the controller drops the old one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from mssp.common.files import write_atomic
from mssp.common.natstls import pinned_context
from mssp.v1 import gateway_pb2

if TYPE_CHECKING:
    from gateway_agent.runtime import GatewayAgent

log = logging.getLogger("mssp.agent")

MAX_CAS = 4
MAX_BUNDLE_BYTES = 64 * 1024
BEGIN = b"-----BEGIN CERTIFICATE-----"
END = b"-----END CERTIFICATE-----"


class TrustRefused(ValueError):
    pass


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def parse_bundle(pem: bytes) -> list[x509.Certificate]:
    """1..MAX_CAS self-signed CA certificates, every PEM block whole; TrustRefused otherwise."""
    if not pem or len(pem) > MAX_BUNDLE_BYTES:
        raise TrustRefused("the CA bundle is empty or too large")
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TrustRefused(f"the CA bundle does not parse: {exc}") from exc
    if not 1 <= len(certs) <= MAX_CAS or pem.count(BEGIN) != len(certs) or pem.count(END) != len(certs):
        raise TrustRefused("the CA bundle is torn or holds too many certificates")
    for cert in certs:
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca or not _issued_by(cert, cert):
            raise TrustRefused(f"{cert.subject.rfc4514_string()} in the CA bundle is not a self-signed CA")
    return certs


def adopt(ca_path: Path, answer: gateway_pb2.CaTrust) -> bool:
    """Replace the trust in `ca_path` with the answer's bundle (blocking); False when it holds the
    same CAs already. TrustRefused (nothing changed) for a bundle that cannot be taken."""
    offered = parse_bundle(answer.bundle_pem)
    held = parse_bundle(ca_path.read_bytes())
    offered_fps, held_fps = [fingerprint(c) for c in offered], {fingerprint(c) for c in held}
    if answer.issuing_fingerprint not in offered_fps:
        raise TrustRefused("the CA bundle does not hold the CA that issues certificates")
    if not held_fps & set(offered_fps):
        raise TrustRefused("the CA bundle holds none of the CAs trusted now")
    if set(offered_fps) == held_fps:
        return False
    write_atomic(ca_path, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in offered))
    return True


def on_replaced_ca(cert_path: Path, ca_path: Path, issuing: str) -> bool:
    """Our certificate is from a CA we trust that is not `issuing`, and `issuing` is trusted (blocking)."""
    if not issuing:
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        trusted = parse_bundle(ca_path.read_bytes())
    except (OSError, ValueError):
        return False
    by_fp = {fingerprint(c): c for c in trusted}
    if issuing not in by_fp or _issued_by(cert, by_fp[issuing]):
        return False
    return any(_issued_by(cert, ca) for ca in trusted)


class CaFollower:
    """One per agent; runs on the push worker (following.py), in order with the other answers."""

    def __init__(self, agent: GatewayAgent) -> None:
        self.agent = agent
        self.issuing = ""  # the CA that signs gateway certificates now, as the last answer said
        self._taken: tuple[bytes, str] | None = None  # the last answer taken: the same again is a no-op
        agent.renewer.early = self.on_replaced_ca  # renewal.py asks before waiting for 60-70%

    def on_replaced_ca(self) -> bool:
        ident = self.agent.identity
        return on_replaced_ca(ident.cert_path, ident.ca_path, self.issuing)

    async def apply(self, answer: gateway_pb2.CaTrust) -> None:
        agent = self.agent
        label = agent.identity.label
        taken = (answer.bundle_pem, answer.issuing_fingerprint)
        if taken == self._taken:  # every GetBrokers repeats it: no certificate checks a second time
            return
        try:
            changed = await asyncio.to_thread(adopt, agent.identity.ca_path, answer)
        except (TrustRefused, OSError) as exc:
            agent.away.warning("%s: keeping the CAs we trust: %s", label, exc, kind="ca")
            return
        self.issuing = answer.issuing_fingerprint
        self._taken = taken
        if changed:
            log.info("%s: trusted CAs now %s", label, ", ".join(
                fingerprint(c)[:16] for c in parse_bundle(answer.bundle_pem)))
            await self._retrust(answer.bundle_pem)
        if await asyncio.to_thread(self.on_replaced_ca):
            log.info("%s: our certificate is from a CA being replaced: renewing now", label)
            agent.renewer.wake()

    async def _retrust(self, bundle_pem: bytes) -> None:
        """New gRPC calls and the next NATS (re)connect verify the servers with the new trust."""
        nc = self.agent._nc
        if nc is not None and not nc.is_closed and nc.options.get("tls") is not None:
            nc.options["tls"] = await asyncio.to_thread(pinned_context, bundle_pem)
        await self.agent.reopen_channel()
