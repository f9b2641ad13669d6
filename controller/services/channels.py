"""Channels and the push log: seqs, heads, desired versions, the outbox and its pruning.

Every change that alters what gateways enforce commits, in its own transaction, the versioned push
that carries it (append_push): a change is either stored and on its way to every gateway, or not
made at all. Channel seqs are allocated by an UPDATE on the channel row, which serializes writers
on both SQLite and PostgreSQL, so seqs are dense and several controllers may share one database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import delete, update
from sqlmodel import Session, col, func, select

from controller.domain.models import Versions
from controller.store.db import Database
from controller.store.models import Channel, PushLog, Tenant
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL, tenant_channel
from mssp.common.clock import now_ms
from mssp.v1 import common_pb2, push_pb2

# Deltas kept for resyncs; an agent further behind gets a snapshot instead.
PUSH_LOG_KEEP = 20_000


def head(s: Session, channel: str) -> int:
    row = s.get(Channel, channel, populate_existing=True)
    return row.seq if row is not None else 0


def heads(s: Session) -> dict[str, int]:
    return {name: seq for name, seq in s.exec(select(Channel.name, Channel.seq))}


def desired_from_heads(channel_heads: Mapping[str, int], tenant_id: str, sharing: bool) -> Versions:
    """What a tenant's gateway should be at: the global head, its tenant channel's head and, while
    the tenant shares, the alliance head. The one definition: listings, enrollment and status acks
    all come here."""
    return Versions(global_seq=channel_heads.get(GLOBAL_CHANNEL, 0),
                    tenant_seq=channel_heads.get(tenant_channel(tenant_id), 0),
                    alliance_seq=channel_heads.get(ALLIANCE_CHANNEL, 0) if sharing else 0)


def sharing(s: Session, tenant_id: str) -> bool:
    return bool(s.exec(select(Tenant.sharing).where(Tenant.id == tenant_id)).first())


def desired(s: Session, tenant_id: str) -> Versions:
    names = (GLOBAL_CHANNEL, tenant_channel(tenant_id), ALLIANCE_CHANNEL)
    return desired_from_heads({name: head(s, name) for name in names}, tenant_id, sharing(s, tenant_id))


def lock_channel(s: Session, channel: str) -> None:
    """Hold the channel row until commit BEFORE reading what a change depends on (PostgreSQL;
    a SQLite session already holds the write lock). Lock order everywhere: tenant row, channel
    row, then indicator rows, so concurrent writers serialize instead of deadlocking."""
    s.exec(select(Channel.name).where(Channel.name == channel).with_for_update()).first()


def append_push(
    s: Session, channel: str, *, policy: common_pb2.PolicyBundle | None = None,
    iocs: push_pb2.IocDelta | None = None,
) -> int:
    """Take the channel's next seq (row-locked by the UPDATE) and store the push with the change."""
    bumped = s.exec(  # type: ignore[call-overload]
        update(Channel).where(col(Channel.name) == channel).values(seq=Channel.seq + 1)
    )
    if bumped.rowcount == 0:
        s.add(Channel(name=channel, seq=1))
        s.flush()
    seq = head(s, channel)
    push = push_pb2.Push(channel=channel, seq=seq)
    if policy is not None:
        push.policy.CopyFrom(policy)
    if iocs is not None:
        push.iocs.CopyFrom(iocs)
    s.add(PushLog(channel=channel, seq=seq, payload=push.SerializeToString(deterministic=True),
                  created_at_ms=now_ms()))
    s.flush()
    return seq


class Channels:
    def __init__(self, db: Database) -> None:
        self.db = db

    def desired_versions(self, tenant_id: str) -> Versions:
        with self.db.session(readonly=True) as s:
            return desired(s, tenant_id)

    def channel_heads(self) -> dict[str, int]:
        with self.db.session(readonly=True) as s:  # polled by the publisher and the status recorder
            return {name: seq for name, seq in heads(s).items() if seq > 0}

    def published_heads(self) -> dict[str, int]:
        """Each channel's head as far as it went out on NATS: what beacons announce. A beacon of a seq
        still in the outbox (a large push being split and signed) would send every gateway into a
        resync for a push a moment from arriving. Status acks keep the stored heads: over gRPC they
        are the way a gateway catches up when NATS publishing is broken."""
        with self.db.session(readonly=True) as s:
            found = {name: seq for name, seq in heads(s).items() if seq > 0}
            pending = s.exec(select(PushLog.channel, func.min(PushLog.seq))
                             .where(col(PushLog.published).is_(False)).group_by(PushLog.channel))
            for channel, first in pending:
                if channel in found:
                    found[channel] = min(found[channel], first - 1)
            return {name: seq for name, seq in found.items() if seq > 0}

    def unpublished_outbox(self, limit: int = 1000) -> list[tuple[int, push_pb2.Push]]:
        with self.db.session(readonly=True) as s:
            rows = s.exec(
                select(PushLog).where(col(PushLog.published).is_(False)).order_by(col(PushLog.id)).limit(limit)
            ).all()
            return [(row.id, push_pb2.Push.FromString(row.payload)) for row in rows if row.id is not None]

    def mark_published(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self.db.session() as s:
            s.exec(update(PushLog).where(col(PushLog.id).in_(list(ids))).values(published=True))  # type: ignore[call-overload]

    def prune_push_log(self, keep: int = PUSH_LOG_KEEP) -> int:
        """Forget published deltas beyond the newest `keep` per channel; older agents get snapshots."""
        removed = 0
        with self.db.session() as s:
            for channel in s.exec(select(Channel)).all():
                cutoff = channel.seq - keep
                if cutoff > 0:
                    result = s.exec(delete(PushLog).where(  # type: ignore[call-overload]
                        col(PushLog.channel) == channel.name, col(PushLog.seq) <= cutoff,
                        col(PushLog.published).is_(True),
                    ))
                    removed += result.rowcount or 0
        return removed
