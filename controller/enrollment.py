"""One-time enrollment transitions, each a conditional UPDATE checked by its rowcount.

A token is spent once and a gateway goes pending -> enrolled once, whatever the store's locking:
of any number of concurrent callers exactly one matches the row (PostgreSQL re-checks the WHERE
after waiting for the row lock; SQLite runs writers one at a time, see store/db.py). A read first
and a write after, as before, let 184 of 200 two-thread races on SQLite spend one token twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from controller.domain.errors import Conflict, InvalidInput, Unauthenticated
from controller.domain.models import GatewayStatus
from controller.store.models import EnrollmentToken, Gateway, Tenant
from mssp.common.clock import now_ms
from mssp.common.text import clean_line

AGENT_VERSION_MAX = 64  # the Gateway.agent_version column


@dataclass(frozen=True)
class EnrollmentTicket:
    gateway_id: str
    gateway_name: str
    tenant_id: str
    tenant_name: str


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def spend_token(s: Session, secret: str) -> EnrollmentTicket:
    """Mark the token used if it is still unused and unexpired; refuse (and change nothing) else."""
    token_hash, now = hash_token(secret), now_ms()
    spent = s.exec(  # type: ignore[call-overload]
        update(EnrollmentToken).where(
            col(EnrollmentToken.token_hash) == token_hash, col(EnrollmentToken.used_at_ms) == 0,
            col(EnrollmentToken.expires_at_ms) > now,
        ).values(used_at_ms=now)
    )
    token = s.get(EnrollmentToken, token_hash, populate_existing=True)
    if token is None:
        raise Unauthenticated("unknown enrollment token")
    if spent.rowcount != 1:
        if token.used_at_ms:
            raise Unauthenticated("enrollment token was already used; ask the operator for a new one")
        raise Unauthenticated("enrollment token expired; ask the operator for a new one")
    gateway = s.get(Gateway, token.gateway_id)
    if gateway is None or gateway.status != GatewayStatus.PENDING:  # raising rolls the spend back
        raise Unauthenticated("enrollment token is for a gateway that can no longer enroll")
    tenant = s.get(Tenant, gateway.tenant_id)
    assert tenant is not None
    return EnrollmentTicket(gateway.id, gateway.name, tenant.id, tenant.name)


def refuse_used_nats_key(s: Session, key: str) -> None:
    """A NATS key any gateway holds or held is refused: the broker revokes keys by gateway, so a
    gateway presenting another's public key (it is no secret) would get that gateway revoked. The
    RPCs refuse an empty key before this (check_nats_public_key); rows not enrolled hold none."""
    if not key:
        return
    used = s.exec(select(Gateway.id).where(
        or_(col(Gateway.nats_public_key) == key, col(Gateway.prev_nats_public_key) == key)).limit(1)).first()
    if used is not None:
        raise InvalidInput("this NATS public key is already in use: make a fresh nkey")


def mark_enrolled(
    s: Session, gateway_id: str, *, cert_serial: str, nats_public_key: str, agent_version: str,
    alliance_aware: bool = False, cert_validity_ms: tuple[int, int] = (0, 0), rotation_aware: bool = False,
) -> str:
    """pending -> enrolled with its credentials; the gateway's tenant id. A gateway revoked (or
    enrolled by someone else) since its token was spent stays as it is: Conflict. The agent version
    is the gateway's own text: stored inert (terminal controls escaped) and cut to its column after
    escaping, like every status report (status_recorder.inert)."""
    agent_version = clean_line(agent_version[:AGENT_VERSION_MAX], AGENT_VERSION_MAX)
    refuse_used_nats_key(s, nats_public_key)
    now = now_ms()
    pending = col(Gateway.status) == GatewayStatus.PENDING.value
    moved = s.exec(  # type: ignore[call-overload]
        update(Gateway).where(col(Gateway.id) == gateway_id, pending).values(
            status=GatewayStatus.ENROLLED.value, cert_serial=cert_serial, nats_public_key=nats_public_key,
            agent_version=agent_version, enrolled_at_ms=now, last_seen_ms=now, alliance_aware=alliance_aware,
            cert_not_before_ms=cert_validity_ms[0], cert_not_after_ms=cert_validity_ms[1],
            rotation_aware=rotation_aware,
        )
    )
    if moved.rowcount != 1:
        raise Conflict("gateway can no longer enroll (revoked or already enrolled)")
    return s.exec(select(Gateway.tenant_id).where(Gateway.id == gateway_id)).one()
