"""Gateway certificate renewal: a new certificate and NATS key for keys the router made, once.

The agent asks over mTLS with the certificate it holds. One conditional UPDATE (on the serial the
row had when we read it) moves the gateway to the new serial, so of concurrent renewals one wins and
the others are refused. The certificate it replaces may still renew (nothing else) until the next
renewal: an agent that lost the answer (a crash, a cut connection) retries with it instead of being
locked out. The NATS key it replaces goes on the broker's revocation list (controller/store/revoked.py),
and a key any gateway holds or held is refused. A revoked gateway renews nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, update
from sqlmodel import col, select

from controller.domain.errors import Conflict, Unauthenticated
from controller.domain.models import GatewayStatus
from controller.enrollment import refuse_used_nats_key
from controller.store import models as rows
from controller.store.db import Database
from mssp.common.clock import now_ms


@dataclass(frozen=True)
class RenewalTicket:
    """The gateway a certificate names, as read before signing anything."""

    gateway_id: str
    tenant_id: str
    sharing: bool
    presented_serial: str  # the certificate the agent authenticated with
    current_serial: str  # the row's serial when read: the renewal commits only if it is unchanged
    current_nats_key: str
    jwt_issued_s: int  # also unchanged at commit: an alliance change meanwhile re-issued the JWT


@dataclass(frozen=True)
class Renewed:
    jwt_issued_s: int  # the new JWT's issue time (the broker revokes the gateway's older ones)
    replaced_nats_key: str  # the NATS key that no longer connects: revoke it at the broker


class Renewals:
    def __init__(self, db: Database) -> None:
        self.db = db

    def ticket(self, serial: str) -> RenewalTicket:
        """Who `serial` (current or just replaced) belongs to; Unauthenticated when revoked or unknown."""
        with self.db.session(readonly=True) as s:
            found = s.exec(
                select(rows.Gateway, rows.Tenant.sharing)
                .join(rows.Tenant, rows.Tenant.id == rows.Gateway.tenant_id)
                .where(or_(rows.Gateway.cert_serial == serial, rows.Gateway.prev_cert_serial == serial),
                       rows.Gateway.status == GatewayStatus.ENROLLED.value)
            ).first()
        if found is None:
            raise Unauthenticated("gateway certificate is revoked or unknown: renewal refused")
        g, sharing = found
        return RenewalTicket(g.id, g.tenant_id, bool(sharing), serial, g.cert_serial or "", g.nats_public_key,
                             g.nats_jwt_issued_s)

    def commit(
        self, ticket: RenewalTicket, *, serial: str, not_before_ms: int, not_after_ms: int,
        nats_public_key: str,
    ) -> Renewed:
        """Make `serial` the gateway's certificate; the presented one stays valid until the next."""
        now = now_ms()
        issued_s = max(now // 1000 + 1, ticket.jwt_issued_s + 1)  # after every JWT so far (whole seconds)
        with self.db.session() as s:
            refuse_used_nats_key(s, nats_public_key)
            moved = s.exec(  # type: ignore[call-overload]
                update(rows.Gateway).where(
                    col(rows.Gateway.id) == ticket.gateway_id,
                    col(rows.Gateway.status) == GatewayStatus.ENROLLED.value,
                    col(rows.Gateway.cert_serial) == ticket.current_serial,
                    col(rows.Gateway.nats_jwt_issued_s) == ticket.jwt_issued_s,
                ).values(
                    cert_serial=serial, prev_cert_serial=ticket.presented_serial,
                    nats_public_key=nats_public_key, prev_nats_public_key=ticket.current_nats_key,
                    nats_jwt_issued_s=issued_s, cert_not_before_ms=not_before_ms,
                    cert_not_after_ms=not_after_ms, renewed_at_ms=now,
                )
            )
            if moved.rowcount != 1:
                status = s.exec(
                    select(rows.Gateway.status).where(rows.Gateway.id == ticket.gateway_id)).first()
                if status != GatewayStatus.ENROLLED.value:
                    raise Unauthenticated("gateway was revoked meanwhile: renewal refused")
                raise Conflict("gateway certificate or NATS JWT changed meanwhile; retry")
        return Renewed(issued_s, ticket.current_nats_key)
