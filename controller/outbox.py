"""The outbox side of the push log, as the publisher reads it: raw rows (their size is known
before anything is parsed) and the rows that could not go out on NATS, with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, update
from sqlmodel import col, select

from controller.store.db import Database
from controller.store.models import PushLog
from mssp.common.parts import MAX_PUSH_BYTES

MAX_ERROR_CHARS = 500
# Payload bytes one outbox read loads (at least one row): large pushes must not pile up in memory.
READ_BUDGET_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class OutboxRow:
    id: int
    channel: str
    seq: int
    size: int
    payload: bytes  # a serialized, unsigned Push; left empty (not loaded) when over MAX_PUSH_BYTES
    created_at_ms: int = 0  # when it was committed (the publish latency's start)


@dataclass(frozen=True)
class PublishError:
    channel: str
    seq: int
    error: str
    created_at_ms: int


def pending(db: Database, limit: int = 1000, budget: int = READ_BUDGET_BYTES) -> list[OutboxRow]:
    """Unpublished rows in commit order, up to `limit` rows and `budget` payload bytes. Sizes are
    read first: a row too large to publish is returned without its payload."""
    with db.session(readonly=True) as s:
        heads = s.exec(
            select(PushLog.id, PushLog.channel, PushLog.seq, func.length(PushLog.payload),
                   PushLog.created_at_ms)
            .where(col(PushLog.published).is_(False)).order_by(col(PushLog.id)).limit(limit)
        ).all()
        chosen: list[tuple[int, str, int, int, int]] = []
        used = 0
        for row_id, channel, seq, size, created in heads:
            loaded = size if size <= MAX_PUSH_BYTES else 0
            if row_id is None or (chosen and used + loaded > budget):
                break
            chosen.append((row_id, channel, seq, size, created))
            used += loaded
        wanted = [row_id for row_id, _, _, size, _ in chosen if size <= MAX_PUSH_BYTES]
        payloads: dict[int | None, bytes] = {}
        if wanted:
            query = select(PushLog.id, PushLog.payload).where(col(PushLog.id).in_(wanted))
            payloads.update(s.exec(query).all())
        return [OutboxRow(i, c, q, n, payloads.get(i, b""), t) for i, c, q, n, t in chosen]


def mark_unpublishable(db: Database, failures: Sequence[tuple[int, str]]) -> None:
    """Take rows out of the outbox for good, keeping why: they stay in the log for resyncs."""
    if not failures:
        return
    statement = (
        update(PushLog).where(col(PushLog.id) == bindparam("rid"))
        .values(published=True, publish_error=bindparam("err"))
    )
    with db.session() as s:
        s.connection().execute(statement, [{"rid": i, "err": e[:MAX_ERROR_CHARS]} for i, e in failures])


def publish_errors(db: Database, limit: int = 20) -> list[PublishError]:
    """The newest rows that never went out on NATS (what `fleet status` shows the operator)."""
    with db.session(readonly=True) as s:
        rows = s.exec(
            select(PushLog.channel, PushLog.seq, PushLog.publish_error, PushLog.created_at_ms)
            .where(PushLog.publish_error != "").order_by(col(PushLog.id).desc()).limit(limit)
        ).all()
        return [PublishError(c, q, e, t) for c, q, e, t in rows]
