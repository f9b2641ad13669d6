"""Resync: what brings a gateway from the versions it applied to the channel heads.

Deltas from the push log when they are the cheaper way, a snapshot of the channel when they are
not: when the gap holds more pushes or more bytes than the whole channel state, when deltas were
pruned, when one of them is too large to travel (it was never published), when the agent claims
a seq we never issued, or when it asks. A gateway can so never make the controller replay and sign
a long history: the answer is bounded by the size of its channel state.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from controller.domain.models import SeqPair
from controller.services import channels
from controller.store.db import Database
from controller.store.models import Ioc, PushLog, Tenant
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL, tenant_channel
from mssp.common.clock import now_ms
from mssp.common.parts import MAX_PUSH_BYTES
from mssp.v1 import common_pb2, push_pb2

# IOCs per snapshot part: ~60 bytes each keeps a part near one envelope (larger ones travel in parts).
SNAPSHOT_PART_IOCS = 5000
# Wire bytes of one IOC in a snapshot beyond its value and source (tags, type, confidence, expiry).
IOC_WIRE_OVERHEAD = 12


def sync_pushes(
    db: Database, tenant_id: str, applied: SeqPair, *, force_snapshot: bool = False, alliance: bool = False
) -> list[push_pb2.Push]:
    """`alliance`: the agent follows the alliance channel; it is answered for only while the tenant
    shares (an agent that has not yet heard that its tenant left keeps nothing new from it)."""
    pushes: list[push_pb2.Push] = []
    with db.session(readonly=True) as s:
        wanted = [(GLOBAL_CHANNEL, applied.global_seq), (tenant_channel(tenant_id), applied.tenant_seq)]
        if alliance and channels.sharing(s, tenant_id):
            wanted.append((ALLIANCE_CHANNEL, applied.alliance_seq))
        for channel, have in wanted:
            head = channels.head(s, channel)
            if not force_snapshot and have == head:
                continue
            deltas = None
            if not force_snapshot and have < head and _deltas_are_cheaper(s, channel, have, head):
                deltas = _deltas(s, channel, have, head)
            pushes.extend(deltas if deltas is not None else snapshot(s, channel, head))
    return pushes


def _deltas_are_cheaper(s: Session, channel: str, have: int, head: int) -> bool:
    """Compare the gap with the snapshot by count and bytes, from aggregates (nothing is loaded)."""
    size = func.length(PushLog.payload)
    count, total, largest = s.exec(
        select(func.count(), func.coalesce(func.sum(size), 0), func.coalesce(func.max(size), 0))
        .where(PushLog.channel == channel, PushLog.seq > have, PushLog.seq <= head)
    ).one()
    if count != head - have or largest > MAX_PUSH_BYTES:
        return False  # pruned, or a delta that cannot travel: the snapshot is the only way
    iocs, ioc_bytes = s.exec(
        select(func.count(), func.coalesce(func.sum(func.length(Ioc.value) + func.length(Ioc.source)), 0))
        .where(Ioc.channel == channel)
    ).one()
    snapshot_items = iocs + (1 if _has_policy(channel) else 0)
    snapshot_bytes = int(ioc_bytes) + iocs * IOC_WIRE_OVERHEAD + _bundle_bytes(s, channel)
    return count <= snapshot_items and int(total) <= snapshot_bytes


def _has_policy(channel: str) -> bool:
    return channel not in (GLOBAL_CHANNEL, ALLIANCE_CHANNEL)


def _bundle_bytes(s: Session, channel: str) -> int:
    if not _has_policy(channel):
        return 0
    size = s.exec(
        select(func.length(Tenant.policy_bundle)).where(Tenant.id == channel.partition(":")[2])
    ).first()
    return int(size or 0)


def _deltas(s: Session, channel: str, have: int, head: int) -> list[push_pb2.Push] | None:
    rows = s.exec(
        select(PushLog.payload).where(PushLog.channel == channel, PushLog.seq > have, PushLog.seq <= head)
        .order_by(col(PushLog.seq))
    ).all()
    if len(rows) != head - have:  # pruned meanwhile
        return None
    return [push_pb2.Push.FromString(payload) for payload in rows]


def snapshot(s: Session, channel: str, seq: int) -> list[push_pb2.Push]:
    """The channel at `seq`. The head is read before the content: content that is newer than
    `seq` is harmless (its deltas are idempotent upserts/removes and follow anyway)."""
    now = now_ms()
    iocs = [
        common_pb2.Ioc(type=r.type, value=r.value, expires_at_ms=r.expires_at_ms, confidence=r.confidence,
                       source=r.source)
        for r in s.exec(select(Ioc).where(Ioc.channel == channel).order_by(Ioc.type, Ioc.value))
        if not r.expires_at_ms or r.expires_at_ms > now
    ]
    chunks: list[list[common_pb2.Ioc]] = [
        iocs[i : i + SNAPSHOT_PART_IOCS] for i in range(0, len(iocs), SNAPSHOT_PART_IOCS)
    ] or [[]]
    parts = []
    for index, chunk in enumerate(chunks):
        part = push_pb2.SnapshotPart(index=index, last=index == len(chunks) - 1, iocs=chunk)
        if index == 0 and _has_policy(channel):
            bundle = _tenant_bundle(s, channel)
            if bundle is not None:
                part.policy.CopyFrom(bundle)
        parts.append(push_pb2.Push(channel=channel, seq=seq, snapshot=part))
    return parts


def _tenant_bundle(s: Session, channel: str) -> common_pb2.PolicyBundle | None:
    tenant = s.get(Tenant, channel.partition(":")[2])
    if tenant is None or not tenant.policy_bundle:
        return None
    return common_pb2.PolicyBundle.FromString(tenant.policy_bundle)
