"""Enrollment: one-time token + CSR + NATS public key -> certificate, CA, credentials, endpoints.

First contact has no trusted CA yet. The token carries the SHA-256 of the controller's CA
(`<secret>.<ca-sha256>`, like a k3s join token), so the agent reads the chain the server presents,
keeps the CA certificate that matches the pin, and only then opens the verified TLS channel.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import ssl
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway_agent import __version__
from gateway_agent.errors import AgentError
from gateway_agent.identity import AgentIdentity, make_nats_user_seed, make_tls_key_and_csr
from mssp.common.creds import creds_file_text
from mssp.common.files import write_private
from mssp.v1 import enrollment_pb2, enrollment_pb2_grpc

ENROLL_TIMEOUT = 15.0


class EnrollError(AgentError):
    pass


def split_token(token: str) -> tuple[str, str]:
    """(whole token as sent to the controller, CA pin)."""
    token = token.strip()
    secret, dot, pin = token.rpartition(".")
    if not dot or not secret or len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
        raise EnrollError(
            "malformed enrollment token: expected the full token printed by `msspctl gateway add`"
        )
    return token, pin


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EnrollError(f"controller address {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def fetch_pinned_ca(address: str, pin: str, timeout: float = ENROLL_TIMEOUT) -> bytes:
    """Read the server's presented chain without trusting it; keep only the CA matching the pin."""
    host, port = split_host_port(address)
    # No system trust store: the pin is the trust (and loading it costs ~10 ms per enrollment).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, ctx.wrap_socket(raw) as tls:
            getter = getattr(tls, "get_unverified_chain", None) or tls._sslobj.get_unverified_chain  # type: ignore[union-attr]
            chain = [c.public_bytes(ssl._ssl.ENCODING_DER) for c in getter()]  # type: ignore[attr-defined]
    except OSError as exc:
        raise EnrollError(f"cannot reach the controller at {address}: {exc}") from exc
    certs = [x509.load_der_x509_certificate(der) for der in chain]
    for der, cert in zip(chain, certs, strict=True):
        if hashlib.sha256(der).hexdigest() == pin:
            try:
                certs[0].verify_directly_issued_by(cert)
            except Exception as exc:
                raise EnrollError("the controller's certificate is not issued by the pinned CA") from exc
            return cert.public_bytes(serialization.Encoding.PEM)
    raise EnrollError(
        f"the controller at {address} does not present the CA pinned in the token "
        "(wrong controller, a machine in the middle, or a token made before a CA rollover finished: "
        "ask the operator for a new one)"
    )


async def enroll(
    controller: str, token: str, state_dir: Path, *, ca_cert: bytes | None = None, server_name: str = ""
) -> AgentIdentity:
    if AgentIdentity.exists(state_dir):
        existing = AgentIdentity.load(state_dir)
        raise EnrollError(f"{state_dir} is already enrolled as {existing.label}; use a fresh state dir")
    full_token, pin = split_token(token)
    if ca_cert is None:
        ca_cert = await asyncio.to_thread(fetch_pinned_ca, controller, pin)
    key_pem, csr_pem = make_tls_key_and_csr()
    nats_seed, nats_public = make_nats_user_seed()
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    creds = grpc.ssl_channel_credentials(root_certificates=ca_cert)
    async with grpc.aio.secure_channel(controller, creds, options=options) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
        request = enrollment_pb2.EnrollRequest(
            token=full_token, csr_pem=csr_pem, nats_public_key=nats_public, agent_version=__version__,
            alliance_aware=True, rotation_aware=True, ca_rollover_aware=True,
        )
        try:
            reply = await stub.Enroll(request, timeout=ENROLL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise EnrollError(f"cannot reach the controller at {controller}: {exc.details()}") from exc
            raise EnrollError(f"enrollment refused: {exc.details()}") from exc
    return await asyncio.to_thread(
        _store, state_dir, reply, key_pem, nats_seed, controller=controller, server_name=server_name
    )


def _store(
    state_dir: Path,
    reply: enrollment_pb2.EnrollResponse,
    key_pem: bytes,
    nats_seed: bytes,
    *,
    controller: str,
    server_name: str,
) -> AgentIdentity:
    """Write everything into a sibling dir first so a half-written enrollment never looks valid."""
    tmp = state_dir.with_name(state_dir.name + ".enrolling")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700)
    write_private(tmp / "tls.key", key_pem)
    (tmp / "tls.crt").write_bytes(reply.client_cert_pem)
    (tmp / "ca.crt").write_bytes(reply.ca_cert_pem)
    write_private(tmp / "nats.creds", creds_file_text(reply.nats_user_jwt, nats_seed).encode())
    identity = AgentIdentity(
        state_dir=tmp,
        tenant_id=reply.tenant_id,
        tenant_name=reply.tenant_name,
        gateway_id=reply.gateway_id,
        gateway_name=reply.gateway_name,
        controller=controller,
        gateway_endpoint=reply.gateway_endpoint,
        nats_urls=list(reply.nats_urls),
        signing_public_key_hex=reply.signing_public_key.hex(),
        tls_server_name=server_name,
    )
    identity.save()
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    if state_dir.exists():
        # An empty or leftover dir without identity.json: move our files in.
        for item in tmp.iterdir():
            item.replace(state_dir / item.name)
        tmp.rmdir()
    else:
        tmp.replace(state_dir)
    identity.state_dir = state_dir
    return identity
