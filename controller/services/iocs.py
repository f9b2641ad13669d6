"""Indicators of compromise: add or refresh, remove, list, expire; each change pushed with it on
the global channel or its tenant's.

A refresh (adding a value the scope already holds) changes only the fields given: a re-add
without a ttl keeps the expiry, without a confidence or source keeps those. A remove of a value the
scope does not hold names the scopes that do, so a typo in --scope is not mistaken for success."""

from __future__ import annotations

from sqlmodel import Session, col, select

from controller.domain.errors import InvalidInput
from controller.domain.ioc import IocKind, parse_ioc, to_proto
from controller.domain.ioc_meta import (
    DEFAULT_CONFIDENCE,
    Scope,
    parse_scope,
    validate_confidence,
    validate_source,
)
from controller.domain.models import Indicator, IocRecord, RemoveIocResult
from controller.services.channels import append_push, head, lock_channel
from controller.services.tenants import tenant_row
from controller.store import models as rows
from controller.store.db import Database
from mssp.common.channels import GLOBAL_CHANNEL, tenant_channel
from mssp.common.clock import now_ms
from mssp.common.limits import MAX_TTL_SECONDS
from mssp.v1 import common_pb2, push_pb2


def scope_channel(s: Session, scope: Scope) -> str:
    if scope.tenant is None:
        return GLOBAL_CHANNEL
    return tenant_channel(tenant_row(s, scope.tenant).id)


def ioc_record(row: rows.Ioc, scope: str, *, refreshed: bool = False) -> IocRecord:
    ioc = Indicator(type=IocKind(row.type), value=row.value, expires_at_ms=row.expires_at_ms,
                    confidence=row.confidence, source=row.source)
    return IocRecord(ioc=ioc, scope=scope, created_at_ms=row.created_at_ms, seq=row.seq, refreshed=refreshed)


def scope_names(s: Session) -> dict[str, str]:
    """channel -> scope as the operator writes it, for every scope an operator can see."""
    live = select(rows.Tenant).where(rows.Tenant.deleted_at_ms == 0)
    names = {tenant_channel(t.id): f"tenant:{t.name}" for t in s.exec(live)}
    names[GLOBAL_CHANNEL] = "global"
    return names


class Iocs:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_ioc(
        self, value: str, scope: str = "global", *, ttl_seconds: int | None = None, source: str | None = None,
        confidence: int | None = None,
    ) -> IocRecord:
        """Add or refresh an indicator; its push commits with it. None = not given: a new indicator
        gets the default (never expires, DEFAULT_CONFIDENCE, DEFAULT_SOURCE), a refresh keeps its own."""
        parsed = parse_ioc(value)
        where = parse_scope(scope)
        if ttl_seconds is not None and not 0 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidInput(f"ttl must be between 0 (never expires) and 10 years, got {ttl_seconds}s")
        if confidence is not None:
            confidence = validate_confidence(confidence)
        if source is not None:
            source = validate_source(source)
        now = now_ms()
        with self.db.session() as s:
            channel = scope_channel(s, where)
            lock_channel(s, channel)  # else two adds of a new indicator both insert it
            row = s.exec(
                select(rows.Ioc)
                .where(rows.Ioc.channel == channel, rows.Ioc.type == int(parsed.kind),
                       rows.Ioc.value == parsed.value)
            ).first()
            refreshed = row is not None and not 0 < row.expires_at_ms <= now  # expired: added anew
            if row is None:
                row = rows.Ioc(channel=channel, type=int(parsed.kind), value=parsed.value, created_at_ms=now,
                               source=validate_source(None), confidence=DEFAULT_CONFIDENCE, expires_at_ms=0)
            elif not refreshed:
                row.created_at_ms, row.source, row.confidence = now, validate_source(None), DEFAULT_CONFIDENCE
                row.expires_at_ms = 0
            if ttl_seconds is not None:
                row.expires_at_ms = now + ttl_seconds * 1000 if ttl_seconds else 0
            row.source = row.source if source is None else source
            row.confidence = row.confidence if confidence is None else confidence
            wire = to_proto(parsed, expires_at_ms=row.expires_at_ms, confidence=row.confidence,
                            source=row.source)
            row.seq = append_push(s, channel, iocs=push_pb2.IocDelta(upsert=[wire]))
            s.add(row)
            s.flush()
            return ioc_record(row, str(where), refreshed=refreshed)

    def remove_ioc(self, value: str, scope: str = "global") -> RemoveIocResult:
        """Removing an indicator that is not there is not an error and changes nothing."""
        parsed = parse_ioc(value)
        where = parse_scope(scope)
        with self.db.session() as s:
            channel = scope_channel(s, where)
            lock_channel(s, channel)  # else two removes both push the removal
            row = s.exec(
                select(rows.Ioc).where(rows.Ioc.channel == channel, rows.Ioc.type == int(parsed.kind),
                                       rows.Ioc.value == parsed.value)
            ).first()
            if row is None:
                names = scope_names(s)
                others = s.exec(select(rows.Ioc.channel).where(
                    rows.Ioc.type == int(parsed.kind), rows.Ioc.value == parsed.value
                )).all()
                held = tuple(sorted(names[c] for c in others if c in names))
                return RemoveIocResult(removed=False, seq=head(s, channel), held_in=held)
            s.delete(row)
            gone = common_pb2.Ioc(type=row.type, value=row.value)
            seq = append_push(s, channel, iocs=push_pb2.IocDelta(remove=[gone]))
            return RemoveIocResult(removed=True, seq=seq)

    def list_iocs(self, scope: str | None = None) -> list[IocRecord]:
        with self.db.session(readonly=True) as s:
            names = scope_names(s)  # a deleted tenant's indicators are hidden with it
            query = select(rows.Ioc).where(col(rows.Ioc.channel).in_(names))
            if scope:
                query = select(rows.Ioc).where(rows.Ioc.channel == scope_channel(s, parse_scope(scope)))
            query = query.order_by(rows.Ioc.channel, rows.Ioc.type, rows.Ioc.value)
            return [ioc_record(row, names.get(row.channel, row.channel)) for row in s.exec(query)]

    def expire_iocs(self) -> int:
        """Drop indicators past their expiry and push the removals (the kernel already stopped them)."""
        now = now_ms()
        expired = (col(rows.Ioc.expires_at_ms) > 0, col(rows.Ioc.expires_at_ms) <= now)
        with self.db.session() as s:
            channels = sorted(set(s.exec(select(rows.Ioc.channel).where(*expired)).all()))
            for channel in channels:  # sorted: controllers expiring at once lock in one order
                lock_channel(s, channel)
            # Read under the locks: what another expirer already removed is not removed (pushed) again.
            found = s.exec(
                select(rows.Ioc).where(*expired, col(rows.Ioc.channel).in_(channels))
                .order_by(rows.Ioc.channel)
            ).all()
            by_channel: dict[str, list[common_pb2.Ioc]] = {}
            for row in found:
                by_channel.setdefault(row.channel, []).append(common_pb2.Ioc(type=row.type, value=row.value))
                s.delete(row)
            for channel, gone in by_channel.items():
                append_push(s, channel, iocs=push_pb2.IocDelta(remove=gone))
            return len(found)
