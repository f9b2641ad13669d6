"""Revoking and retiring gateway records inside a caller's write transaction, each a conditional
UPDATE checked by its rowcount (like controller/enrollment.py), so of concurrent callers one wins.

A retired record is a revoked tombstone: it keeps its certificate serial and NATS key (the broker's
revocation list and the gRPC auth read them, controller/store/revoked.py) and is renamed "~<id>"
(never a valid gateway name) so its name is free for a new identity; former_name keeps it for
labelling the old identity's telemetry."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlmodel import Session, col

from controller.domain.errors import Conflict
from controller.domain.models import GatewayStatus
from controller.store import models as rows
from mssp.common.clock import now_ms

REVOKED = GatewayStatus.REVOKED.value


def revoke_row(s: Session, gateway: rows.Gateway) -> bool:
    """Revoke `gateway` and drop its tokens; False if it was already revoked (by a racer too). The
    row is re-read under its lock, so an enrollment that committed meanwhile has its key revoked."""
    moved = s.exec(  # type: ignore[call-overload]
        update(rows.Gateway)
        .where(col(rows.Gateway.id) == gateway.id, col(rows.Gateway.status) != REVOKED)
        .values(status=REVOKED)
    )
    if moved.rowcount != 1:
        s.refresh(gateway)
        return False
    s.refresh(gateway)
    gateway.status, gateway.revoked_at_ms = REVOKED, now_ms()  # see store/revoked.py
    s.add(gateway)
    s.exec(delete(rows.EnrollmentToken).where(col(rows.EnrollmentToken.gateway_id) == gateway.id))
    s.flush()
    return True


def retire_row(s: Session, gateway: rows.Gateway, shown: str) -> None:
    """Revoked -> retired tombstone, once; `shown` names it in the Conflict a losing racer gets."""
    moved = s.exec(  # type: ignore[call-overload]
        update(rows.Gateway)
        .where(col(rows.Gateway.id) == gateway.id, col(rows.Gateway.status) == REVOKED,
               col(rows.Gateway.retired_at_ms) == 0)
        .values(name="~" + gateway.id, former_name=gateway.name, retired_at_ms=now_ms())
    )
    if moved.rowcount != 1:
        raise Conflict(f"gateway {shown} was changed by another call meanwhile; run the command again")
    s.flush()
    s.refresh(gateway)
