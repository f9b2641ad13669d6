"""URL indicators kept for reporting: what each source named, whether its host is blocked.

Gateways enforce addresses and domains only: a URL's host is blocked when that is safe (see
services/intel_import.py), and the URL itself is kept here so reports and operators can see what a
feed was about. Like claims, a source's URLs are its own: a feed sync replaces only that feed's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, update
from sqlmodel import Session, col, select

from controller.domain.ioc_meta import parse_scope
from controller.services.scopes import scope_channel, scope_names
from controller.store.bulk import insert_rows
from controller.store.db import Database
from controller.store.intel_models import UrlIndicator

MAX_URL_LEN = 2048
URL_COLS = ("channel", "url_hash", "source", "url", "host", "host_blocked", "first_seen_ms", "last_seen_ms")


@dataclass(frozen=True)
class UrlView:
    url: str
    host: str
    host_blocked: bool
    source: str
    scope: str
    first_seen_ms: int
    last_seen_ms: int


def keepable(url: str) -> bool:
    """Printable and of a sane length: it is shown to operators as it came."""
    return 0 < len(url) <= MAX_URL_LEN and url.isprintable()


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def store_urls(s: Session, channel: str, source: str, urls: Mapping[str, tuple[str, bool]], now: int, *,
               sync: bool) -> int:
    """Record the URLs (url -> (host, host blocked)) one source named; with `sync` the source's
    others go. Returns how many were new."""
    table = UrlIndicator.__table__  # type: ignore[attr-defined]
    held = set(s.exec(select(UrlIndicator.url_hash).where(
        UrlIndicator.channel == channel, UrlIndicator.source == source)).all())
    hashed = {url_hash(url): (url, host, blocked) for url, (host, blocked) in urls.items()}
    conn = s.connection()
    insert_rows(conn, table, URL_COLS, [(channel, h, source, url, host[:253], blocked, now, now)
                                        for h, (url, host, blocked) in hashed.items() if h not in held])
    seen = [{"h": h} for h in hashed if h in held]
    where = (table.c.channel == channel, table.c.source == source)
    if seen:
        conn.execute(update(table).where(*where, table.c.url_hash == bindparam("h")).values(last_seen_ms=now),
                     seen)
    gone = [{"h": h} for h in held - hashed.keys()] if sync else []
    if gone:
        conn.execute(delete(table).where(*where, table.c.url_hash == bindparam("h")), gone)
    return sum(1 for h in hashed if h not in held)


def list_urls(db: Database, scope: str | None = None, limit: int = 1000) -> list[UrlView]:
    with db.session(readonly=True) as s:
        names = scope_names(s)
        query = select(UrlIndicator).where(col(UrlIndicator.channel).in_(names))
        if scope:
            query = select(UrlIndicator).where(UrlIndicator.channel == scope_channel(s, parse_scope(scope)))
        query = query.order_by(col(UrlIndicator.last_seen_ms).desc(), UrlIndicator.url).limit(limit)
        return [UrlView(r.url, r.host, r.host_blocked, r.source, names.get(r.channel, r.channel),
                        r.first_seen_ms, r.last_seen_ms) for r in s.exec(query)]
