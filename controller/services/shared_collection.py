"""The collection partners read over TAXII: the MSSP's global and alliance indicators that a source
marked TLP:CLEAR or TLP:GREEN, oldest version first, in pages (``added_after``, ``limit``, ``next``).
Alliance indicators are the operator's and feeds' claims on that channel; promotions from tenants'
sightings (the herd-immunity issue) will need those tenants' consent before they are listed here.

An indicator whose enforced form changed (confidence, expiry) is a new version: it is added to the
collection again at that time, with its STIX ``modified``, so ``added_after`` brings changes too.
Objects are ordered by (date added, row id), a unique order, so a ``next`` cursor resumes exactly
where its page ended. Nothing here names a tenant or a source.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, or_, tuple_
from sqlmodel import col, select

from controller.domain.errors import InvalidInput
from controller.services.claims import chunks
from controller.services.intel_export import DEFAULT_TLP, stix_indicator
from controller.store.db import Database
from controller.store.intel_models import IocClaim
from controller.store.models import Ioc
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL
from mssp.common.clock import now_ms

_RANK = {"clear": 0, "green": 1}
MAX_PAGE = 1000


@dataclass(frozen=True)
class SharedObject:
    date_added_ms: int
    stix: dict[str, Any]


@dataclass(frozen=True)
class SharedPage:
    objects: list[SharedObject]
    more: bool
    next: str  # "" when there is no further page


def encode_cursor(added_ms: int, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{added_ms}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[int, int]:
    try:
        added, _, row = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition(":")
        return int(added), int(row)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("invalid next token (take it from the previous page)") from None


SHARED_CHANNELS = (GLOBAL_CHANNEL, ALLIANCE_CHANNEL)


class SharedCollection:
    def __init__(self, db: Database) -> None:
        self.db = db

    def page(self, *, added_after_ms: int | None = None, cursor: str | None = None,
             limit: int = 100) -> SharedPage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        marked = exists().where(
            IocClaim.channel == Ioc.channel, IocClaim.type == Ioc.type, IocClaim.value == Ioc.value,
            col(IocClaim.tlp).in_(DEFAULT_TLP))
        now = now_ms()
        query = select(Ioc.id, Ioc.type, Ioc.value, Ioc.confidence, Ioc.updated_at_ms, Ioc.expires_at_ms,
                       Ioc.created_at_ms).where(col(Ioc.channel).in_(SHARED_CHANNELS), marked,
            or_(col(Ioc.expires_at_ms) == 0, col(Ioc.expires_at_ms) > now))
        if added_after_ms is not None:
            query = query.where(col(Ioc.updated_at_ms) > added_after_ms)
        if cursor:
            added, row_id = decode_cursor(cursor)
            query = query.where(or_(col(Ioc.updated_at_ms) > added,
                                    and_(col(Ioc.updated_at_ms) == added, col(Ioc.id) > row_id)))
        query = query.order_by(col(Ioc.updated_at_ms), col(Ioc.id)).limit(limit + 1)
        with self.db.session(readonly=True) as s:
            rows = s.exec(query).all()[: limit + 1]
            more = len(rows) > limit
            rows = rows[:limit]
            levels: dict[tuple[int, str], str] = {}
            keys = [(r[1], r[2]) for r in rows]
            for part in chunks(keys):  # the least restrictive marking any source gave
                for t, v, tlp in s.exec(select(IocClaim.type, IocClaim.value, IocClaim.tlp).where(
                        col(IocClaim.channel).in_(SHARED_CHANNELS), col(IocClaim.tlp).in_(DEFAULT_TLP),
                        tuple_(col(IocClaim.type), col(IocClaim.value)).in_(part))):
                    if (t, v) not in levels or _RANK[tlp] < _RANK[levels[(t, v)]]:
                        levels[(t, v)] = tlp
        objects: list[SharedObject] = []
        seen: set[tuple[int, str, int]] = set()
        for _id, t, v, c, changed, e, created in rows:
            if (t, v, changed) not in seen:  # held by both channels: one object per version
                seen.add((t, v, changed))
                indicator = stix_indicator(t, v, c, created, e, levels[(t, v)], changed)
                objects.append(SharedObject(changed, indicator))
        token = encode_cursor(rows[-1][4], rows[-1][0]) if more and rows else ""
        return SharedPage(objects, more, token)
