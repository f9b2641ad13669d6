"""Tables of threat intelligence: who claims each indicator, the allow-list, and scheduled feeds.

An indicator (``ioc``) stays while any source claims it: an operator, a feed, an import. Each claim
has its own confidence, expiry and marking, so a feed refresh removes only that feed's claims and an
indicator an operator added survives it. Claims are keyed by the indicator's identity (channel,
type, value) rather than a row id, so a million of them insert without reading ids back.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel


def _ms(*, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(BigInteger, nullable=False, default=0, server_default="0", index=index)


class IocClaim(SQLModel, table=True):
    __tablename__ = "ioc_claim"
    __table_args__ = (Index("ix_ioc_claim_source", "channel", "source"),
                      Index("ix_ioc_claim_decay", "decays", "confidence", "last_seen_ms"),
                      Index("ix_ioc_claim_expires", "expires_at_ms"))  # the expiry job, every second

    channel: str = Field(primary_key=True, max_length=48)
    type: int = Field(primary_key=True)
    value: str = Field(primary_key=True, max_length=253)
    source: str = Field(primary_key=True, max_length=64)  # "operator", "feed:NAME", an import's --source
    confidence: int
    expires_at_ms: int = Field(sa_column=_ms())  # 0 = never
    created_at_ms: int = Field(sa_column=_ms())
    last_seen_ms: int = Field(sa_column=_ms())  # the source said it again (a refresh, a re-import)
    tlp: str = Field(default="", max_length=12)  # "" = unmarked
    decays: bool = Field(default=False)  # feeds and imports decay (domain/decay.py); an operator's add not


class UrlIndicator(SQLModel, table=True):
    """A URL a source named, kept for reporting: gateways block its host (when that is safe), never
    the URL itself. Keyed by the URL's SHA-256 so a 2 KB URL makes a short index entry."""

    __tablename__ = "url_indicator"

    channel: str = Field(primary_key=True, max_length=48)
    url_hash: str = Field(primary_key=True, max_length=64)
    source: str = Field(primary_key=True, max_length=64)
    url: str = Field(sa_column=Column(Text, nullable=False))
    host: str = Field(max_length=253)
    host_blocked: bool = Field(default=False)  # False: a popular or shared host, kept for reporting only
    first_seen_ms: int = Field(sa_column=_ms())
    last_seen_ms: int = Field(sa_column=_ms())


class AllowEntry(SQLModel, table=True):
    """A value the never-block guard refuses to block in its scope (every scope when global)."""

    __tablename__ = "allow_entry"

    channel: str = Field(primary_key=True, max_length=48)
    value: str = Field(primary_key=True, max_length=253)  # canonical address, CIDR or domain
    note: str = Field(default="", max_length=200)
    created_at_ms: int = Field(sa_column=_ms())


class Feed(SQLModel, table=True):
    """A source the controller refreshes itself; each refresh is a sync of its claims."""

    name: str = Field(primary_key=True, max_length=63)
    kind: str = Field(max_length=8)  # url | path | taxii
    location: str = Field(sa_column=Column(Text, nullable=False))
    format: str = Field(max_length=8)
    column: str = Field(default="", max_length=63)
    channel: str = Field(max_length=48)
    confidence: int = Field(default=-1)  # -1: the feed's own, else the default
    every_seconds: int
    tlp: str = Field(default="", max_length=12)
    token_env: str = Field(default="", max_length=64)  # taxii: the controller's env var with a bearer token
    etag: str = Field(default="", sa_column=Column(Text, nullable=False, default="", server_default=""))
    last_modified: str = Field(default="", max_length=64)
    next_run_ms: int = Field(sa_column=_ms(index=True))
    last_run_ms: int = Field(sa_column=_ms())
    last_success_ms: int = Field(sa_column=_ms())
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default="", server_default=""))
    entries: int = Field(default=0)
    created_at_ms: int = Field(sa_column=_ms())


__all__ = ["AllowEntry", "Feed", "IocClaim", "UrlIndicator"]
