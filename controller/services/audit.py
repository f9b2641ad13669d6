"""The audit log: every change made through the operator API, with who, when, what, and the
state before and after, kept in the store next to what it describes.

Rows are written by the access interceptor after a change succeeded (controller/grpc_api/access.py);
the texts are JSON that the caller has already stripped of secrets. Each text is bounded so one
large import or policy cannot bloat the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from controller.domain.errors import InvalidInput
from controller.domain.names import show
from controller.store.db import Database
from controller.store.operator_models import AuditEvent
from mssp.common.clock import now_ms

MAX_TEXT = 64 * 1024
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class AuditEntry:
    operator: str
    role: str
    action: str
    tenant: str
    target: str
    request: str
    before: str
    after: str


@dataclass(frozen=True)
class AuditRecord(AuditEntry):
    id: int
    at_ms: int


def bounded(text: str) -> str:
    """A JSON text cut to MAX_TEXT stays JSON: it becomes a string saying what was cut."""
    if len(text) <= MAX_TEXT:
        return text
    return f'"({len(text)} characters, not kept: over {MAX_TEXT})"'


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, entry: AuditEntry) -> None:
        with self.db.session() as s:
            s.add(AuditEvent(
                at_ms=now_ms(), operator=entry.operator, role=entry.role, action=entry.action[:64],
                tenant=entry.tenant[:63], target=entry.target[:200], request=bounded(entry.request),
                before=bounded(entry.before), after=bounded(entry.after),
            ))

    def list(self, *, tenant: str = "", since_ms: int = 0, operator: str = "", action: str = "",
             limit: int = 0) -> tuple[list[AuditRecord], bool]:
        """Newest first, and whether more matched than `limit`."""
        if limit < 0 or limit > MAX_LIMIT:
            raise InvalidInput(f"limit {limit} is out of range 1-{MAX_LIMIT}")
        if since_ms < 0:
            raise InvalidInput(f"since {since_ms} is before 1970")
        if len(action) > 64 or (action and not action.isalnum()):
            raise InvalidInput(f"unknown action {show(action)}: use a call name such as SetPolicy")
        limit = limit or DEFAULT_LIMIT
        query = select(AuditEvent).where(col(AuditEvent.at_ms) >= since_ms)
        for column, value in ((AuditEvent.tenant, tenant), (AuditEvent.operator, operator),
                              (AuditEvent.action, action)):
            if value:
                query = query.where(column == value)
        query = query.order_by(col(AuditEvent.at_ms).desc(), col(AuditEvent.id).desc()).limit(limit + 1)
        with self.db.session(readonly=True) as s:
            rows = list(s.exec(query))
        records = [AuditRecord(operator=r.operator, role=r.role, action=r.action, tenant=r.tenant,
                               target=r.target, request=r.request, before=r.before, after=r.after,
                               id=r.id or 0, at_ms=r.at_ms) for r in rows[:limit]]
        return records, len(rows) > limit
