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


def revoked_nats_keys(db: Database) -> dict[str, int]:
    """NATS user public key -> revocation time in unix seconds (rounded up: a JWT minted in the
    second of the revocation dies too), for every revoked gateway that ever got a NATS user."""
    with db.session(readonly=True) as s:
        rows = s.exec(
            select(Gateway.nats_public_key, Gateway.revoked_at_ms).where(
                Gateway.status == GatewayStatus.REVOKED.value, Gateway.nats_public_key != ""
            )
        ).all()
    return {key: max(1, -(-int(at_ms) // 1000)) for key, at_ms in rows}


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
