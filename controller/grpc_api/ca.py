"""The CA calls of OperatorService (show, roll over), and what GetBrokers says about the CAs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.ca_set import DEFAULT_OVERLAP_S, CaSet
from controller.domain.errors import Conflict
from controller.grpc_api.errors import maps_domain_errors
from controller.pki import CertificateAuthority, ca_fingerprint
from controller.services.ca_fleet import CaFleet
from mssp.v1 import gateway_pb2, operator_pb2

if TYPE_CHECKING:
    from controller.service import ControllerService


def ca_trust(ca: CertificateAuthority | CaSet) -> gateway_pb2.CaTrust:
    """What GetBrokers tells gateways to trust."""
    cas = CaSet.of(ca)
    return gateway_pb2.CaTrust(bundle_pem=cas.bundle_pem, issuing_fingerprint=cas.signer.fingerprint)


def _certificate(cert: x509.Certificate | None) -> operator_pb2.CaCertificate | None:
    if cert is None:
        return None
    return operator_pb2.CaCertificate(
        fingerprint=ca_fingerprint(cert.public_bytes(serialization.Encoding.PEM)),
        subject=cert.subject.rfc4514_string(),
        not_before_ms=int(cert.not_valid_before_utc.timestamp() * 1000),
        not_after_ms=int(cert.not_valid_after_utc.timestamp() * 1000),
    )


def ca_status(cas: CaSet, fleet: CaFleet) -> operator_pb2.CaStatus:
    """Blocking (the store)."""
    counts = fleet.counts(cas.signer.fingerprint, first_ca=cas.previous is None and cas.next is None)
    rollover = cas.rollover
    return operator_pb2.CaStatus(
        current=_certificate(cas.current.cert), next=_certificate(cas.next.cert if cas.next else None),
        previous=_certificate(cas.previous), overlap_ends_ms=rollover.overlap_ends_ms if rollover else 0,
        finished_at_ms=cas.finished_at_ms, gateways_enrolled=counts.enrolled,
        gateways_on_old_ca=counts.on_other_ca,
    )


class CaCalls:
    """Mixed into OperatorServicer (which authenticates and holds `ca` and `service`)."""

    ca: CertificateAuthority | CaSet
    service: ControllerService
    authenticate: Callable[[grpc.aio.ServicerContext], None]
    on_ca_change: Callable[[], Awaitable[None]] | None

    @maps_domain_errors
    async def ShowCa(
        self, request: operator_pb2.ShowCaRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.CaStatus:
        self.authenticate(context)
        return await asyncio.to_thread(ca_status, CaSet.of(self.ca), CaFleet(self.service.db))

    @maps_domain_errors
    async def RolloverCa(
        self, request: operator_pb2.RolloverCaRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.CaStatus:
        """Refused, changing nothing, while agents that cannot follow it are enrolled (--force)."""
        self.authenticate(context)
        cas, fleet = CaSet.of(self.ca), CaFleet(self.service.db)
        unable = [] if request.force else await asyncio.to_thread(fleet.unable_to_follow)
        if unable:
            more = f" and {len(unable) - 5} more" if len(unable) > 5 else ""
            raise Conflict(
                f"{len(unable)} enrolled gateways run an agent that cannot follow a CA rollover "
                f"({', '.join(unable[:5])}{more}): they would be cut off when the old CA is dropped; "
                "upgrade them first, or force it")
        await asyncio.to_thread(cas.begin_rollover, request.overlap_seconds or DEFAULT_OVERLAP_S)
        if self.on_ca_change is not None:  # before the answer: renewals onto the next CA may follow at once
            await self.on_ca_change()
        return await asyncio.to_thread(ca_status, cas, fleet)
