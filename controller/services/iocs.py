"""Indicators of compromise: add or refresh, remove, list, expire; each change pushed with it on
the global channel or its tenant's."""

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


def ioc_record(row: rows.Ioc, scope: str) -> IocRecord:
    ioc = Indicator(type=IocKind(row.type), value=row.value, expires_at_ms=row.expires_at_ms,
                    confidence=row.confidence, source=row.source)
    return IocRecord(ioc=ioc, scope=scope, created_at_ms=row.created_at_ms, seq=row.seq)


class Iocs:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_ioc(
        self, value: str, scope: str = "global", *, ttl_seconds: int = 0, source: str | None = None,
        confidence: int | None = None,
    ) -> IocRecord:
        """Add or refresh an indicator; its push commits with it."""
        parsed = parse_ioc(value)
        where = parse_scope(scope)
        if not 0 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidInput(f"ttl must be between 0 (never expires) and 10 years, got {ttl_seconds}s")
        confidence = validate_confidence(DEFAULT_CONFIDENCE if confidence is None else confidence)
        source = validate_source(source)
        now = now_ms()
        expires = now + ttl_seconds * 1000 if ttl_seconds else 0
        wire = to_proto(parsed, expires_at_ms=expires, confidence=confidence, source=source)
        with self.db.session() as s:
            channel = scope_channel(s, where)
            lock_channel(s, channel)  # else two adds of a new indicator both insert it
            row = s.exec(
                select(rows.Ioc)
                .where(rows.Ioc.channel == channel, rows.Ioc.type == wire.type, rows.Ioc.value == wire.value)
            ).first()
            if row is None:
                row = rows.Ioc(channel=channel, type=wire.type, value=wire.value, source=source,
                             confidence=confidence, created_at_ms=now)
            row.source, row.confidence, row.expires_at_ms = source, confidence, expires
            row.seq = append_push(s, channel, iocs=push_pb2.IocDelta(upsert=[wire]))
            s.add(row)
            s.flush()
            return ioc_record(row, str(where))

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
                return RemoveIocResult(removed=False, seq=head(s, channel))
            s.delete(row)
            gone = common_pb2.Ioc(type=row.type, value=row.value)
            seq = append_push(s, channel, iocs=push_pb2.IocDelta(remove=[gone]))
            return RemoveIocResult(removed=True, seq=seq)

    def list_iocs(self, scope: str | None = None) -> list[IocRecord]:
        with self.db.session(readonly=True) as s:
            names = {tenant_channel(t.id): f"tenant:{t.name}" for t in s.exec(select(rows.Tenant))}
            names[GLOBAL_CHANNEL] = "global"
            query = select(rows.Ioc).order_by(rows.Ioc.channel, rows.Ioc.type, rows.Ioc.value)
            if scope:
                query = query.where(rows.Ioc.channel == scope_channel(s, parse_scope(scope)))
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
