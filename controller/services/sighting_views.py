"""Sightings as the operator reads them: one entry per indicator, with where it was seen.

The operator sees everything (tenants, gateways, hosts). Tenants never read this view; what they
see of the alliance is anonymous (the herd-immunity issue's tenant API).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, tuple_
from sqlmodel import col, select

from controller.domain.errors import InvalidInput, NotFound
from controller.services.claims import chunks
from controller.services.tenants import tenant_row
from controller.store.db import Database
from controller.store.models import Gateway, Tenant
from controller.store.sighting_models import Sighting, SightingCandidate

STATES = ("candidate", "promoted", "dismissed")
MAX_LISTED = 1000  # the most recently seen


@dataclass(frozen=True)
class SightingWhere:
    tenant: str
    gateway: str
    host: str
    via: str
    count: int
    first_seen_ms: int
    last_seen_ms: int


@dataclass(frozen=True)
class SightingView:
    id: str
    type: int
    value: str
    state: str
    tenants: int
    sharing_tenants: int
    gateways: int
    hosts: int
    count: int
    first_seen_ms: int
    last_seen_ms: int
    confidence: int
    scope: str
    decided_by: str
    decided_at_ms: int
    reason: str
    seen_at: tuple[SightingWhere, ...]


def sighting_by_id(db: Database, candidate_id: str) -> SightingView:
    found = list_sightings(db, candidate_id=candidate_id)
    if not found:
        raise NotFound(f"unknown sighting {candidate_id[:40]!r}")
    return found[0]


def list_sightings(db: Database, tenant: str | None = None, since_ms: int = 0,
                   state: str | None = None, candidate_id: str | None = None) -> list[SightingView]:
    if state and state not in STATES:
        raise InvalidInput(f"unknown sighting state {state!r}; use one of {', '.join(STATES)}")
    if since_ms < 0:
        raise InvalidInput("since must not be negative")
    with db.session(readonly=True) as s:
        query = select(SightingCandidate).where(SightingCandidate.last_seen_ms >= since_ms)
        tenant_id = tenant_row(s, tenant).id if tenant else None
        if state:
            query = query.where(SightingCandidate.state == state)
        if candidate_id is not None:
            query = query.where(SightingCandidate.id == candidate_id)
        if tenant_id:
            query = query.where(exists().where(Sighting.type == SightingCandidate.type,
                                               Sighting.value == SightingCandidate.value,
                                               Sighting.tenant_id == tenant_id))
        query = query.order_by(col(SightingCandidate.last_seen_ms).desc()).limit(MAX_LISTED)
        candidates = s.exec(query).all()
        by_key: dict[tuple[int, str], list[Sighting]] = {}
        for part in chunks([(c.type, c.value) for c in candidates]):  # one read per 500, not one each
            found = s.exec(select(Sighting).where(tuple_(col(Sighting.type), col(Sighting.value)).in_(part))
                           .order_by(col(Sighting.last_seen_ms).desc()))
            for r in found:
                by_key.setdefault((r.type, r.value), []).append(r)
        tenants = {t.id: (t.name, t.sharing) for t in s.exec(select(Tenant))}  # hundreds at most
        gateways: dict[str, str] = {}
        for ids in chunks(sorted({r.gateway_id for rows in by_key.values() for r in rows})):
            gateways.update(s.exec(select(Gateway.id, Gateway.name).where(col(Gateway.id).in_(ids))).all())
        out = []
        for c in candidates:
            rows = by_key.get((c.type, c.value), [])
            seen_by = {r.tenant_id for r in rows}
            shown = [r for r in rows if tenant_id is None or r.tenant_id == tenant_id]
            where = tuple(SightingWhere(tenants.get(r.tenant_id, ("?", False))[0],
                                        gateways.get(r.gateway_id, "?"), r.host, r.via, r.count,
                                        r.first_seen_ms, r.last_seen_ms) for r in shown)
            out.append(SightingView(
                id=c.id, type=c.type, value=c.value, state=c.state, tenants=len(seen_by),
                sharing_tenants=sum(1 for t in seen_by if tenants.get(t, ("", False))[1]),
                gateways=len({r.gateway_id for r in rows}),
                hosts=len({(r.gateway_id, r.host) for r in rows}), count=sum(r.count for r in rows),
                first_seen_ms=c.first_seen_ms, last_seen_ms=c.last_seen_ms, confidence=c.confidence,
                scope=c.scope, decided_by=c.decided_by, decided_at_ms=c.decided_at_ms, reason=c.reason,
                seen_at=where,
            ))
        return out
