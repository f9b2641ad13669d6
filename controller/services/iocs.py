"""Indicators of compromise: add or refresh, remove, list, expire; each change pushed with it on
the global channel or its tenant's.

An add is one source's claim (services/claims.py); the never-block guard judges it first. A refresh
(adding a value the scope already holds) changes only the fields given: a re-add without a ttl keeps
the expiry, without a confidence keeps that. A remove takes every source's claim; of a value the
scope does not hold it names the scopes that do, so a typo in --scope is not mistaken for success."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from controller.domain.decay import DecayModel
from controller.domain.errors import InvalidInput, NotFound
from controller.domain.ioc import IocKind, parse_ioc
from controller.domain.ioc_meta import (
    DEFAULT_CONFIDENCE,
    FEED_SOURCE_PREFIX,
    parse_scope,
    validate_confidence,
    validate_source,
    validate_ttl,
)
from controller.domain.models import Indicator, IocRecord, RemoveIocResult
from controller.operators import manual_ioc_source
from controller.services.allowlist import GuardSettings, guard_for
from controller.services.channels import head, lock_channel
from controller.services.claims import Aggregate, ChannelWriter, Claim, Key, claims_of, withdraw
from controller.services.decay import refreshed_at
from controller.services.scopes import scope_channel, scope_names
from controller.store import models as rows
from controller.store.db import Database
from controller.store.intel_models import IocClaim
from mssp.common.clock import now_ms


def ioc_record(row: rows.Ioc, scope: str, *, refreshed: bool = False, sources: tuple[str, ...] = (),
               ) -> IocRecord:
    ioc = Indicator(type=IocKind(row.type), value=row.value, expires_at_ms=row.expires_at_ms,
                    confidence=row.confidence, source=row.source)
    return IocRecord(ioc=ioc, scope=scope, created_at_ms=row.created_at_ms, seq=row.seq, refreshed=refreshed,
                     sources=sources)


class Iocs:
    def __init__(self, db: Database, guard: GuardSettings | None = None) -> None:
        self.db = db
        self.guard_settings = guard or GuardSettings()

    def add_ioc(
        self, value: str, scope: str = "global", *, ttl_seconds: int | None = None, source: str | None = None,
        confidence: int | None = None,
    ) -> IocRecord:
        """Add or refresh a source's claim on an indicator; its push commits with it. None = not given:
        taken from the source's claim, else from the indicator as it stands, else the default (never
        expires, DEFAULT_CONFIDENCE). The source, when not given, is the one the indicator shows, or
        DEFAULT_SOURCE when that is a feed's or an import's (a sync or decay may withdraw those)."""
        parsed = parse_ioc(value)
        where = parse_scope(scope)
        if ttl_seconds is not None:
            validate_ttl(ttl_seconds)
        if confidence is not None:
            confidence = validate_confidence(confidence)
        if source is not None and validate_source(source).startswith(FEED_SOURCE_PREFIX):
            raise InvalidInput(f"source {source!r} is reserved for the feed of that name")
        now = now_ms()
        key = (int(parsed.kind), parsed.value)
        with self.db.session() as s:
            channel = scope_channel(s, where)
            lock_channel(s, channel)  # else two adds of a new indicator both insert it
            refusal = guard_for(s, channel, self.guard_settings).refusal(parsed)
            if refusal is not None:
                raise InvalidInput(refusal)
            row = indicator_row(s, channel, key)
            live = row is not None and not 0 < row.expires_at_ms <= now  # expired: added anew
            # Not given: the source the indicator shows now (a refresh keeps it), unless that is a feed
            # or import claim (which a sync or decay may withdraw): then the operator's own.
            shown = row.source if live and row is not None else None
            if source is None and shown is not None and not claims_decay(s, channel, key, shown):
                source = shown
            if source is None:  # added by hand: the operator's own claim (None: the bootstrap's "operator")
                source = manual_ioc_source()
            src = validate_source(source)
            stored = claims_of(s, channel, [key]).get(key, {})
            claims = {name: c for name, c in stored.items() if not 0 < c.expires_at_ms <= now}
            base = claims.get(src) or (Claim(row.confidence, row.expires_at_ms) if live and row else None)
            expires = base.expires_at_ms if base else 0
            if ttl_seconds is not None:
                expires = now + ttl_seconds * 1000 if ttl_seconds else 0
            if confidence is None:
                confidence = base.confidence if base else DEFAULT_CONFIDENCE
            claim = Claim(confidence, expires, base.tlp if base else "", now)
            writer = ChannelWriter(s, channel, now)
            writer.upsert(key, src, claim, existed=src in stored)
            before = {key: Aggregate(row.confidence, row.expires_at_ms, row.source)} if row else {}
            writer.apply(before, {key: {**claims, src: claim}}, always=True)
            fresh = indicator_row(s, channel, key)
            assert fresh is not None
            if not live:
                fresh.created_at_ms = now
                s.add(fresh)
            return ioc_record(fresh, str(where), refreshed=live)

    def remove_ioc(self, value: str, scope: str = "global") -> RemoveIocResult:
        """Removes every source's claim. Removing an indicator that is not there changes nothing."""
        parsed = parse_ioc(value)
        where = parse_scope(scope)
        key = (int(parsed.kind), parsed.value)
        with self.db.session() as s:
            channel = scope_channel(s, where)
            lock_channel(s, channel)  # else two removes both push the removal
            row = indicator_row(s, channel, key)
            if row is None:
                return RemoveIocResult(removed=False, seq=head(s, channel), held_in=held_in(s, key))
            writer = ChannelWriter(s, channel, now_ms())
            for src in claims_of(s, channel, [key]).get(key, {}):
                writer.remove(key, src)
            seqs = writer.apply({key: Aggregate(row.confidence, row.expires_at_ms, row.source)}, {key: {}})[2]
            return RemoveIocResult(removed=True, seq=seqs[-1])

    def list_iocs(self, scope: str | None = None) -> list[IocRecord]:
        with self.db.session(readonly=True) as s:
            names = scope_names(s)  # a deleted tenant's indicators are hidden with it
            query = select(rows.Ioc).where(col(rows.Ioc.channel).in_(names))
            if scope:
                query = select(rows.Ioc).where(rows.Ioc.channel == scope_channel(s, parse_scope(scope)))
            query = query.order_by(rows.Ioc.channel, rows.Ioc.type, rows.Ioc.value)
            found = s.exec(query).all()
            claimed: dict[tuple[str, int, str], list[str]] = {}
            for channel in sorted({row.channel for row in found}):  # one read of the claims per scope
                for t, v, src in s.exec(select(IocClaim.type, IocClaim.value, IocClaim.source)
                                        .where(IocClaim.channel == channel).order_by(IocClaim.source)):
                    claimed.setdefault((channel, t, v), []).append(src)
            return [ioc_record(row, names.get(row.channel, row.channel),
                               sources=tuple(claimed.get((row.channel, row.type, row.value), ())))
                    for row in found]

    def expire_iocs(self) -> int:
        """Drop claims past their expiry; an indicator goes with its last claim (the kernel already
        stopped enforcing it) and one whose claims changed is pushed again. Returns indicators removed."""
        now = now_ms()
        expired = (col(IocClaim.expires_at_ms) > 0, col(IocClaim.expires_at_ms) <= now)
        removed = 0
        with self.db.session() as s:
            channels = sorted(set(s.exec(select(IocClaim.channel).where(*expired)).all()))
            for channel in channels:  # sorted: controllers expiring at once lock in one order
                lock_channel(s, channel)
            for channel in channels:
                # Read under the locks: what another expirer already removed is not removed (pushed) again.
                gone = s.exec(select(IocClaim.type, IocClaim.value, IocClaim.source)
                              .where(*expired, IocClaim.channel == channel)).all()
                removed += withdraw(s, channel, [((t, v), src) for t, v, src in gone], now)
        return removed


def held_in(s: Session, key: Key) -> tuple[str, ...]:
    """The scopes (as the operator writes them) that hold this indicator: a deleted tenant's are hidden."""
    names = scope_names(s)
    channels = s.exec(select(rows.Ioc.channel).where(rows.Ioc.type == key[0], rows.Ioc.value == key[1]))
    return tuple(sorted(names[c] for c in channels if c in names))


def claims_decay(s: Session, channel: str, key: Key, source: str) -> bool:
    """True for a feed's or an import's claim: not the operator's to refresh in place."""
    claim = s.get(IocClaim, (channel, key[0], key[1], source))
    return source.startswith(FEED_SOURCE_PREFIX) or (claim is not None and claim.decays)


def indicator_row(s: Session, channel: str, key: Key) -> rows.Ioc | None:
    """The row as the database has it now (claims.ChannelWriter writes with Core statements)."""
    return s.exec(select(rows.Ioc).where(
        rows.Ioc.channel == channel, rows.Ioc.type == key[0], rows.Ioc.value == key[1],
    ).execution_options(populate_existing=True)).first()


@dataclass(frozen=True)
class ClaimView:
    source: str
    confidence: int
    expires_at_ms: int
    tlp: str
    last_seen_ms: int
    decays: bool
    score: float  # the confidence decayed to now (the confidence itself when it does not decay)


def show_ioc(db: Database, value: str, scope: str, model: DecayModel) -> tuple[IocRecord, list[ClaimView]]:
    """One indicator with every source's claim; NotFound (naming the scopes that hold it) else."""
    parsed = parse_ioc(value)
    where = parse_scope(scope)
    now = now_ms()
    with db.session(readonly=True) as s:
        channel = scope_channel(s, where)
        row = indicator_row(s, channel, (int(parsed.kind), parsed.value))
        if row is None:
            held = held_in(s, (int(parsed.kind), parsed.value))
            elsewhere = f"; held in {', '.join(held)}" if held else ""
            raise NotFound(f"{parsed.value} is not in {where}{elsewhere}")
        feeds = refreshed_at(s)
        claims = s.exec(select(IocClaim).where(IocClaim.channel == channel, IocClaim.type == row.type,
                                               IocClaim.value == row.value).order_by(IocClaim.source)).all()
        views = []
        for c in claims:
            seen = max(c.last_seen_ms, feeds.get(c.source, 0))
            score = model.score(c.confidence, now - seen) if c.decays else float(c.confidence)
            views.append(ClaimView(c.source, c.confidence, c.expires_at_ms, c.tlp, seen, c.decays,
                                   round(score, 1)))
        return ioc_record(row, str(where)), views
