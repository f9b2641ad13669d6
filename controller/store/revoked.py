"""Revoked gateways as the broker and the telemetry consumer need them, read from the database.

The database is the only source of truth for revocation: the broker's revocation list is rebuilt
from it (controller/nats/revocation.py), and telemetry a revoked gateway published after its
revocation is dropped at ingest (controller/telemetry/consumer.py), whether or not the broker has
heard of the revocation yet.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import col, select

from controller.domain.models import GatewayStatus
from controller.store.db import Database
from controller.store.models import Gateway

# IN lists stay well below every backend's bound-parameter limit.
_CHUNK = 500


def _seconds_up(at_ms: int) -> int:
    """Unix seconds, rounded up: a JWT minted in the second of the revocation dies too."""
    return max(1, -(-int(at_ms) // 1000))


def revoked_nats_keys(db: Database) -> dict[str, int]:
    """NATS user public key -> revocation time in unix seconds (rounded up: a JWT minted in the
    second of the revocation dies too), for every revoked gateway that ever got a NATS user."""
    with db.session(readonly=True) as s:
        rows = s.exec(
            select(Gateway.nats_public_key, Gateway.revoked_at_ms).where(
                Gateway.status == GatewayStatus.REVOKED.value, Gateway.nats_public_key != ""
            )
        ).all()
    return {key: _seconds_up(at_ms) for key, at_ms in rows}


def reissued_nats_keys(db: Database) -> dict[str, int]:
    """NATS user public key -> the last second whose JWTs are dead, for live gateways whose JWT was
    re-issued (controller/services/alliance.py): the broker revokes JWTs issued at or before it, so
    only the current one (issued a second later) still connects."""
    with db.session(readonly=True) as s:
        rows = s.exec(
            select(Gateway.nats_public_key, Gateway.nats_jwt_issued_s).where(
                Gateway.status != GatewayStatus.REVOKED.value, Gateway.nats_public_key != "",
                Gateway.nats_jwt_issued_s > 0,
            )
        ).all()
    return {key: int(issued) - 1 for key, issued in rows}


def replaced_nats_keys(db: Database) -> dict[str, int]:
    """NATS user public key -> revocation time (unix seconds, rounded up) for the keys certificate
    renewals replaced (controller/services/renewal.py): the router made a new one."""
    with db.session(readonly=True) as s:
        rows = s.exec(
            select(Gateway.prev_nats_public_key, Gateway.renewed_at_ms).where(
                Gateway.prev_nats_public_key != "", Gateway.renewed_at_ms > 0
            )
        ).all()
    return {key: _seconds_up(at_ms) for key, at_ms in rows}


def nats_revocations(db: Database) -> dict[str, int]:
    """Everything the broker must refuse: revoked gateways, replaced keys and superseded JWTs."""
    out = reissued_nats_keys(db)
    for more in (replaced_nats_keys(db), revoked_nats_keys(db)):
        for key, at in more.items():
            out[key] = max(at, out.get(key, 0))
    return out


def revoked_since(db: Database, gateway_ids: Iterable[str]) -> dict[str, int]:
    """gateway id -> revocation time (ms) for those of `gateway_ids` that are revoked."""
    ids = sorted(set(gateway_ids))
    out: dict[str, int] = {}
    with db.session(readonly=True) as s:
        for i in range(0, len(ids), _CHUNK):
            rows = s.exec(
                select(Gateway.id, Gateway.revoked_at_ms).where(
                    Gateway.status == GatewayStatus.REVOKED.value, col(Gateway.id).in_(ids[i:i + _CHUNK])
                )
            ).all()
            out.update({gid: int(at_ms) for gid, at_ms in rows})
    return out
