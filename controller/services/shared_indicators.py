"""The alliance's indicators as a tenant may see them: anonymous.

A tenant in the alliance sees each shared indicator, its confidence, whether the alliance's own
sightings promoted it, and "seen by N organisations" only when N >= k (fewer would let a small
alliance guess who was hit). Never which tenants, gateways or hosts. A tenant outside the alliance
receives no alliance indicators, so it lists none.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select, true, tuple_
from sqlmodel import col

from controller.domain.errors import NotFound
from controller.domain.pagination import check_limit, decode_cursor, encode_cursor
from controller.domain.promotion import PROMOTED_SOURCE
from controller.services.claims import chunks
from controller.store import models as rows
from controller.store.db import Database
from controller.store.intel_models import IocClaim
from controller.store.sighting_models import Sighting
from mssp.common.channels import ALLIANCE_CHANNEL
from mssp.common.clock import now_ms
from mssp.v1 import common_pb2

DEFAULT_K = 3


@dataclass(frozen=True)
class SharedIndicator:
    id: str
    type: str  # ipv4 | ipv6 | ipv4_cidr | ipv6_cidr | domain
    value: str
    confidence: int
    added_at_ms: int
    expires_at_ms: int
    origin: str  # "alliance": promoted from member organisations' sightings; "mssp": the MSSP added it
    seen_by_organisations: int | None  # None: fewer than k


def type_word(kind: int) -> str:
    return common_pb2.IocType.Name(kind).removeprefix("IOC_TYPE_").lower()


def shared_page(db: Database, tenant_id: str, limit: int | None, cursor: str | None,
                k: int = DEFAULT_K) -> tuple[list[SharedIndicator], str | None]:
    limit = check_limit(limit)
    after = decode_cursor(cursor, "indicators", tenant_id, (int, int))
    with db.session(readonly=True) as s:
        tenant = s.get(rows.Tenant, tenant_id)
        if tenant is None or not tenant.sharing:
            return [], None
        now = now_ms()
        live = or_(col(rows.Ioc.expires_at_ms) == 0, col(rows.Ioc.expires_at_ms) > now)
        query = select(rows.Ioc).where(col(rows.Ioc.channel) == ALLIANCE_CHANNEL, live)
        if after is not None:
            added, row_id = after
            query = query.where(or_(col(rows.Ioc.created_at_ms) > added,
                                    and_(col(rows.Ioc.created_at_ms) == added, col(rows.Ioc.id) > row_id)))
        found = list(s.execute(query.order_by(col(rows.Ioc.created_at_ms), col(rows.Ioc.id))
                               .limit(limit + 1)).scalars())
        page = found[:limit]
        keys = [(r.type, r.value) for r in page]
        seen: dict[tuple[int, str], int] = {}
        promoted: set[tuple[int, str]] = set()
        for part in chunks(keys):
            in_part = tuple_(col(Sighting.type), col(Sighting.value)).in_(part)
            counted = (select(Sighting.type, Sighting.value, func.count(func.distinct(Sighting.tenant_id)))
                       .join(rows.Tenant, col(rows.Tenant.id) == col(Sighting.tenant_id))
                       .where(in_part, col(rows.Tenant.sharing) == true())
                       .group_by(Sighting.type, Sighting.value))
            seen.update({(t, v): int(n) for t, v, n in s.execute(counted)})
            claims = select(IocClaim.type, IocClaim.value).where(
                col(IocClaim.channel) == ALLIANCE_CHANNEL, col(IocClaim.source) == PROMOTED_SOURCE,
                tuple_(col(IocClaim.type), col(IocClaim.value)).in_(part))
            promoted.update((t, v) for t, v in s.execute(claims))
    items = [SharedIndicator(
        id=str(r.id), type=type_word(r.type), value=r.value, confidence=r.confidence,
        added_at_ms=r.created_at_ms, expires_at_ms=r.expires_at_ms,
        origin="alliance" if (r.type, r.value) in promoted else "mssp",
        seen_by_organisations=n if (n := seen.get((r.type, r.value), 0)) >= k else None,
    ) for r in page]
    nxt = (encode_cursor("indicators", tenant_id, (page[-1].created_at_ms, int(page[-1].id or 0)))
           if len(found) > limit else None)
    return items, nxt


def shared_value(db: Database, tenant_id: str, indicator_id: str) -> str:
    """The value of alliance indicator `indicator_id`, for a tenant in the alliance; NotFound else."""
    with db.session(readonly=True) as s:
        tenant = s.get(rows.Tenant, tenant_id)
        ok = indicator_id.isascii() and indicator_id.isdigit() and len(indicator_id) < 19
        row = s.get(rows.Ioc, int(indicator_id)) if ok else None
        if tenant is None or not tenant.sharing or row is None or row.channel != ALLIANCE_CHANNEL:
            raise NotFound(f"unknown shared indicator {indicator_id[:20]!r}")
        return row.value
