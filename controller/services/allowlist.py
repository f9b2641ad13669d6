"""The operator's allow-list and the never-block guard built from it for one scope.

A global entry protects every scope; a tenant entry that tenant's scope. The guard judges every way
an indicator comes in (ioc add, import, feeds), so the list is read in the same transaction as the
change it judges.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from controller.domain.errors import AlreadyExists, InvalidInput
from controller.domain.ioc import _IPV4ISH_RE, canonical_network, parse_domain
from controller.domain.ioc_meta import parse_scope
from controller.domain.names import show
from controller.intel.guard import GuardConfig, NeverBlockGuard
from controller.services.scopes import scope_channel, scope_names
from controller.store import models as rows
from controller.store.db import Database
from controller.store.intel_models import AllowEntry
from mssp.common.channels import GLOBAL_CHANNEL
from mssp.common.clock import now_ms

MAX_NOTE_LEN = 200


@dataclass(frozen=True)
class GuardSettings:
    """The guard's configuration that is not data: prefix limits and the controller's own addresses."""

    max_prefix_v4: int = 8
    max_prefix_v6: int = 16
    own_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class AllowRecord:
    value: str
    scope: str
    note: str
    created_at_ms: int
    matching: int = 0  # add: indicators the scope holds with this very value (not removed)


def guard_for(s: Session, channel: str, settings: GuardSettings) -> NeverBlockGuard:
    entries = s.exec(select(AllowEntry.value).where(col(AllowEntry.channel).in_([GLOBAL_CHANNEL, channel])))
    return NeverBlockGuard(GuardConfig(
        max_prefix_v4=settings.max_prefix_v4, max_prefix_v6=settings.max_prefix_v6,
        own_addresses=settings.own_addresses, allowlist=tuple(sorted(entries)),
    ))


def canonical_allow_value(raw: str) -> str:
    """An address, CIDR (any breadth: allowing a /8 is fine) or domain, in canonical form."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("allow-list value is empty")
    text = raw.strip()
    head = text.partition("/")[0]
    if ":" in head or _IPV4ISH_RE.fullmatch(head):
        return canonical_network(text)
    if "/" in text:
        raise InvalidInput(f"{show(text)} is neither an address, a CIDR network nor a domain")
    return parse_domain(text)


class Allowlist:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, value: str, scope: str = "global", note: str = "") -> AllowRecord:
        canonical = canonical_allow_value(value)
        where = parse_scope(scope)
        if not isinstance(note, str) or len(note) > MAX_NOTE_LEN or not note.isprintable():
            raise InvalidInput(f"note must be printable text of at most {MAX_NOTE_LEN} characters")
        with self.db.session() as s:
            channel = scope_channel(s, where)
            if s.get(AllowEntry, (channel, canonical)) is not None:
                raise AlreadyExists(f"{canonical} is already on the allow-list of {where}")
            row = AllowEntry(channel=channel, value=canonical, note=note, created_at_ms=now_ms())
            s.add(row)
            held = select(rows.Ioc.id).where(rows.Ioc.value == canonical)
            if channel != GLOBAL_CHANNEL:
                held = held.where(rows.Ioc.channel == channel)
            matching = len(s.exec(held).all())
            s.flush()
            return AllowRecord(canonical, str(where), note, row.created_at_ms, matching)

    def remove(self, value: str, scope: str = "global") -> bool:
        """False when the entry was not there (nothing changed)."""
        canonical = canonical_allow_value(value)
        with self.db.session() as s:
            row = s.get(AllowEntry, (scope_channel(s, parse_scope(scope)), canonical))
            if row is None:
                return False
            s.delete(row)
            return True

    def list(self, scope: str | None = None) -> list[AllowRecord]:
        with self.db.session(readonly=True) as s:
            names = scope_names(s)
            query = select(AllowEntry).order_by(AllowEntry.channel, AllowEntry.value)
            if scope:
                query = query.where(AllowEntry.channel == scope_channel(s, parse_scope(scope)))
            return [AllowRecord(r.value, names.get(r.channel, r.channel), r.note, r.created_at_ms)
                    for r in s.exec(query) if r.channel in names]
