"""API keys: create, list, revoke, rotate, and authenticate a presented key (the tenant API's door).

Only the SHA-256 of a key is stored; a presented key is found by that hash (unique index), so no
comparison ever touches another key. Malformed keys and bad checksums are refused before any
lookup. A key of a deleted tenant stops working at once (the lookup joins the tenant).

Rotation is one-time under concurrency: the old row is claimed with a conditional UPDATE (not yet
replaced, not revoked) whose rowcount decides the single winner, on SQLite and PostgreSQL alike.
The old key then expires at min(its expiry, now + overlap). The new key keeps the tenant, scopes,
name and the expiry *policy*: a key created to live 90 days rotates into a key that lives 90 days
from the rotation; a key that never expired gives one that never does.

`last_used_at_ms` is written at most once a minute per key (a conditional UPDATE), so a busy key
does not turn every request into a write.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from controller.domain import apikeys as keys
from controller.domain.apikeys import ApiKeyInfo, Principal
from controller.domain.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from controller.domain.names import show
from controller.services.tenants import hold_tenant, tenant_row
from controller.store import models as rows
from controller.store.account_models import ApiKey
from controller.store.db import Database
from mssp.common.clock import now_ms

log = logging.getLogger("mssp.controller.apikeys")

LAST_USED_RESOLUTION_MS = 60_000
_ID_LEN = 32


def _info(row: ApiKey, tenant_name: str, now: int) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id, kind=row.kind, tenant=tenant_name, tenant_id=row.tenant_id, name=row.name,
        scopes=keys.split_scopes(row.scopes), prefix=row.prefix, created_at_ms=row.created_at_ms,
        expires_at_ms=row.expires_at_ms, revoked_at_ms=row.revoked_at_ms, replaced_by=row.replaced_by,
        last_used_at_ms=row.last_used_at_ms, state=keys.key_state(row.expires_at_ms, row.revoked_at_ms, now),
    )


def _check_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not key_id.strip():
        raise InvalidInput("API key id is empty (see `msspctl apikey list`)")
    key_id = key_id.strip()
    if len(key_id) != _ID_LEN or any(c not in "0123456789abcdef" for c in key_id):
        raise NotFound(f"unknown API key id {show(key_id)} (see `msspctl apikey list`)")
    return key_id


def _seconds(value: int | None, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} must be zero or a positive number of seconds, got {show(value)}")
    return value


class ApiKeys:
    def __init__(self, db: Database, *, clock: Callable[[], int] = now_ms) -> None:
        self.db = db
        self.clock = clock  # epoch ms; tests move time with it

    # -- issuing -------------------------------------------------------------------------------

    def create(
        self, tenant_name: str, scopes: Sequence[str] | None = None, expires_seconds: int | None = None,
        name: str | None = None,
    ) -> tuple[ApiKeyInfo, str]:
        """A tenant key (default scopes when none given); the secret is returned once, never stored."""
        granted = keys.validate_scopes(keys.KIND_TENANT, scopes)
        label = keys.validate_label(name)
        ttl = _seconds(expires_seconds, "expiry")
        with self.db.session() as s:
            tenant = tenant_row(s, tenant_name)
            hold_tenant(s, tenant)  # a concurrent `tenant delete` commits first or waits for this key
            row, secret = self._insert(s, keys.KIND_TENANT, tenant.id, label, granted, self.clock(), ttl)
            return _info(row, tenant.name, row.created_at_ms), secret

    def create_partner(self, name: str, expires_seconds: int | None = None) -> tuple[ApiKeyInfo, str]:
        """A key for another MSSP or a CERT: bound to no tenant, scope taxii:read only."""
        label = keys.validate_partner_name(name)
        ttl = _seconds(expires_seconds, "expiry")
        with self.db.session() as s:
            row, secret = self._insert(s, keys.KIND_PARTNER, "", label, keys.PARTNER_SCOPES, self.clock(),
                                       ttl)
            return _info(row, "", row.created_at_ms), secret

    def _insert(
        self, s: Session, kind: str, tenant_id: str, name: str, scopes: Sequence[str], now: int,
        ttl_seconds: int, *, key_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key created at `now`, valid for ttl_seconds (0: never expires)."""
        secret = keys.new_key(kind)
        expires = now + ttl_seconds * 1000 if ttl_seconds else 0
        row = ApiKey(
            id=key_id or uuid.uuid4().hex, kind=kind, tenant_id=tenant_id, name=name,
            scopes=keys.join_scopes(scopes),
            prefix=keys.display_prefix(secret), key_hash=keys.key_hash(secret), created_at_ms=now,
            expires_at_ms=expires, revoked_at_ms=0, replaced_by="", last_used_at_ms=0,
        )
        s.add(row)
        s.flush()
        return row, secret

    # -- reading -------------------------------------------------------------------------------

    def list_keys(self, tenant_name: str | None = None) -> list[ApiKeyInfo]:
        """Every key (partner keys too) or one tenant's, oldest first; keys of deleted tenants are
        hidden like their tenants."""
        now = self.clock()
        with self.db.session(readonly=True) as s:
            query: Any = select(ApiKey, rows.Tenant.name).join(
                rows.Tenant, col(rows.Tenant.id) == col(ApiKey.tenant_id), isouter=True)
            if tenant_name is not None and tenant_name != "":
                query = query.where(col(ApiKey.tenant_id) == tenant_row(s, tenant_name).id)
            live = (col(ApiKey.kind) == keys.KIND_PARTNER) | (col(rows.Tenant.deleted_at_ms) == 0)
            query = query.where(live)
            query = query.order_by(col(ApiKey.created_at_ms), col(ApiKey.id))
            return [_info(row, tname or "", now) for row, tname in s.exec(query)]

    def get(self, key_id: str) -> ApiKeyInfo:
        with self.db.session(readonly=True) as s:
            row, tenant = self._row(s, _check_id(key_id))
            return _info(row, tenant.name if tenant else "", self.clock())

    def _row(self, s: Session, key_id: str) -> tuple[ApiKey, rows.Tenant | None]:
        """The key and its tenant (None for a partner); NotFound for unknown ids and deleted tenants."""
        row = s.get(ApiKey, key_id)
        tenant = s.get(rows.Tenant, row.tenant_id) if row is not None and row.tenant_id else None
        if row is None or (row.kind == keys.KIND_TENANT and (tenant is None or tenant.deleted_at_ms)):
            raise NotFound(f"unknown API key id {show(key_id)} (see `msspctl apikey list`)")
        return row, tenant

    # -- changing ------------------------------------------------------------------------------

    def revoke(self, key_id: str) -> ApiKeyInfo:
        """Revoked once: revoking a revoked key is a Conflict that changes nothing."""
        key_id = _check_id(key_id)
        with self.db.session() as s:
            row, tenant = self._row(s, key_id)
            now = self.clock()
            done = s.exec(  # type: ignore[call-overload]
                update(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at_ms) == 0)
                .values(revoked_at_ms=now)
            )
            if done.rowcount != 1:
                raise Conflict(f"API key {key_id} is already revoked")
            s.refresh(row)
            return _info(row, tenant.name if tenant else "", now)

    def rotate(self, key_id: str, overlap_seconds: int) -> tuple[ApiKeyInfo, str, ApiKeyInfo]:
        """(new key, its secret, the old key with its new expiry). One successor per key, ever."""
        key_id = _check_id(key_id)
        overlap = _seconds(overlap_seconds, "overlap")
        with self.db.session() as s:
            row, tenant = self._row(s, key_id)
            now = self.clock()
            if tenant is not None:
                hold_tenant(s, tenant)
            self._rotatable(row, now)
            # read before the UPDATE: it refreshes `row` in the session
            lifetime_s = (row.expires_at_ms - row.created_at_ms) // 1000 if row.expires_at_ms else 0
            old_expiry = now + overlap * 1000
            if row.expires_at_ms:
                old_expiry = min(row.expires_at_ms, old_expiry)
            new_id = uuid.uuid4().hex
            claimed = s.exec(  # type: ignore[call-overload]
                update(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.replaced_by) == "",
                                     col(ApiKey.revoked_at_ms) == 0)
                .values(replaced_by=new_id, expires_at_ms=old_expiry)
            )
            if claimed.rowcount != 1:
                raise Conflict(f"API key {key_id} was rotated or revoked meanwhile (`msspctl apikey list`)")
            new, secret = self._insert(
                s, row.kind, row.tenant_id, row.name, keys.split_scopes(row.scopes), now, lifetime_s,
                key_id=new_id,
            )
            s.refresh(row)
            tname = tenant.name if tenant else ""
            return _info(new, tname, now), secret, _info(row, tname, now)

    @staticmethod
    def _rotatable(row: ApiKey, now: int) -> None:
        if row.revoked_at_ms:
            raise Conflict(f"API key {row.id} is revoked; create a new one (`msspctl apikey create`)")
        if row.replaced_by:
            raise Conflict(f"API key {row.id} was already rotated (replaced by {row.replaced_by})")
        if row.expires_at_ms and row.expires_at_ms <= now:
            raise Conflict(f"API key {row.id} has expired; create a new one (`msspctl apikey create`)")

    # -- authenticating ------------------------------------------------------------------------

    def authenticate(self, presented: str) -> Principal:
        """The principal of a valid key, else Unauthenticated with a one-line reason that never
        quotes the key. Malformed keys and bad checksums cost no database lookup."""
        if not isinstance(presented, str):
            raise Unauthenticated("malformed API key")
        problem = keys.key_problem(presented)
        if problem is not None:
            raise Unauthenticated(problem)
        digest = keys.key_hash(presented)
        with self.db.session(readonly=True) as s:
            found = s.exec(
                select(ApiKey, rows.Tenant.deleted_at_ms)
                .join(rows.Tenant, col(rows.Tenant.id) == col(ApiKey.tenant_id), isouter=True)
                .where(col(ApiKey.key_hash) == digest)
            ).first()
        if found is None:
            raise Unauthenticated("unknown API key")
        row, tenant_deleted = found
        if row.kind == keys.KIND_TENANT and (tenant_deleted is None or tenant_deleted):
            raise Unauthenticated("API key revoked (its tenant was deleted)")
        now = self.clock()
        if row.revoked_at_ms:
            raise Unauthenticated("API key revoked")
        if row.expires_at_ms and row.expires_at_ms <= now:
            raise Unauthenticated("API key expired")
        if row.last_used_at_ms < now - LAST_USED_RESOLUTION_MS:
            self._touch(row.id, now)
        return Principal(key_id=row.id, kind=row.kind, tenant_id=row.tenant_id or None,
                         scopes=frozenset(keys.split_scopes(row.scopes)))

    def _touch(self, key_id: str, now: int) -> None:
        """Record use, at most once a minute per key; bookkeeping never fails a request."""
        try:
            with self.db.session() as s:
                s.exec(  # type: ignore[call-overload]
                    update(ApiKey).where(col(ApiKey.id) == key_id,
                                         col(ApiKey.last_used_at_ms) < now - LAST_USED_RESOLUTION_MS)
                    .values(last_used_at_ms=now)
                )
        except (SQLAlchemyError, RuntimeError) as exc:
            log.warning("could not record the use of API key %s: %s", key_id, exc)
