"""EnrollmentService: the only call an agent makes before it has a certificate."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
from collections.abc import Callable

import grpc
import nkeys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.ca_set import CaSet
from controller.domain.errors import InvalidInput, Unauthenticated
from controller.grpc_api.convert import versions
from controller.grpc_api.errors import maps_domain_errors
from controller.pki import CLIENT_VALIDITY, CertificateAuthority, load_gateway_csr
from controller.service import ControllerService
from controller.services.ca_fleet import CaFleet
from controller.signing_keys import SigningKeys
from mssp.v1 import enrollment_pb2, enrollment_pb2_grpc

MAX_TOKEN_LEN = 256


def enrollment_token(secret: str, ca: CertificateAuthority | CaSet) -> str:
    """What the operator hands to the router: the secret plus the CA pin for first contact (the CA
    the enrollment listener's certificate is from: the old one during a CA rollover's overlap)."""
    return f"{secret}.{ca.fingerprint}"


def check_nats_public_key(value: str) -> str:
    """A NATS user public nkey: base32 of prefix byte + 32-byte key + CRC16."""
    message = "nats_public_key must be a NATS user public nkey (U..., 56 characters)"
    if not value.startswith("U") or len(value) != 56:
        raise InvalidInput(message)
    try:
        raw = base64.b32decode(value + "=" * (-len(value) % 8))
    except binascii.Error as exc:
        raise InvalidInput(message) from exc
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_USER or nkeys.crc16_checksum(raw[:-2]) != raw[-2:]:
        raise InvalidInput("nats_public_key is not a valid user nkey (bad prefix or checksum)")
    return value


class EnrollmentServicer(enrollment_pb2_grpc.EnrollmentServiceServicer):
    def __init__(
        self,
        service: ControllerService,
        ca: CertificateAuthority | CaSet,
        signing_key: Ed25519PrivateKey | SigningKeys,
        *,
        gateway_endpoint: str,
        nats_urls: list[str],
        mint_gateway_jwt: Callable[..., str],
        cert_lifetime: dt.timedelta = CLIENT_VALIDITY,
    ) -> None:
        self.cert_lifetime = cert_lifetime
        self.service = service
        self.ca = CaSet.of(ca)
        self.keys = SigningKeys.of(signing_key)
        self.gateway_endpoint = gateway_endpoint
        self.nats_urls = nats_urls
        self.mint_gateway_jwt = mint_gateway_jwt

    @maps_domain_errors
    async def Enroll(
        self, request: enrollment_pb2.EnrollRequest, context: grpc.aio.ServicerContext
    ) -> enrollment_pb2.EnrollResponse:
        if not request.token or len(request.token) > MAX_TOKEN_LEN:
            raise Unauthenticated("unknown enrollment token")
        secret, _, pin = request.token.rpartition(".")
        if pin != self.ca.fingerprint:
            raise Unauthenticated("unknown enrollment token (it was issued by another controller)")
        # Validate everything the agent sent before spending the token.
        load_gateway_csr(request.csr_pem)
        nats_key = check_nats_public_key(request.nats_public_key)
        # The spend commits first and exactly one concurrent caller wins it: the others are refused
        # ("already used") before anything is signed. If the gateway is revoked before the winner's
        # pending -> enrolled commits, complete_enrollment refuses and what was signed is dropped unsent.
        ticket = await asyncio.to_thread(self.service.redeem_enrollment_token, secret)
        signer = self.ca.signer  # the next CA during a rollover
        issued = await asyncio.to_thread(
            signer.sign_gateway_csr, request.csr_pem,
            tenant_id=ticket.tenant_id, gateway_id=ticket.gateway_id, validity=self.cert_lifetime,
        )
        # A tenant that starts or stops sharing meanwhile re-issues this JWT (services/alliance.py).
        sharing = await asyncio.to_thread(self.service.alliance.tenant_shares, ticket.tenant_id)
        user_jwt = self.mint_gateway_jwt(nats_key, ticket.tenant_id, ticket.gateway_id, alliance=sharing,
                                         expires_at=int(issued.not_after.timestamp()))
        desired = await asyncio.to_thread(
            self.service.complete_enrollment,
            ticket.gateway_id,
            cert_serial=issued.serial_hex,
            nats_public_key=nats_key,
            agent_version=request.agent_version[:64],
            alliance_aware=request.alliance_aware, rotation_aware=request.rotation_aware,
            cert_validity_ms=issued.validity_ms,
        )
        await asyncio.to_thread(CaFleet(self.service.db).record_certificate, ticket.gateway_id,
                                issued.serial_hex, signer.fingerprint, request.ca_rollover_aware)
        return enrollment_pb2.EnrollResponse(
            tenant_id=ticket.tenant_id,
            tenant_name=ticket.tenant_name,
            gateway_id=ticket.gateway_id,
            gateway_name=ticket.gateway_name,
            client_cert_pem=issued.cert_pem,
            ca_cert_pem=self.ca.bundle_pem,  # both CAs during a rollover's overlap
            gateway_endpoint=self.gateway_endpoint,
            nats_urls=self.nats_urls,
            nats_user_jwt=user_jwt,
            signing_public_key=self.keys.active.public_key().public_bytes_raw(),
            desired=versions(desired),
        )
