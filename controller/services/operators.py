"""Named operator credentials: create, list, revoke, and identify a presented token.

Only the SHA-256 of a token is stored; a presented token is found by that hash (unique index).
Revocation is a conditional UPDATE (still active) whose rowcount decides, so two concurrent
revocations report one success and one "already revoked" on SQLite and PostgreSQL alike, and a
revoked token is refused on the next call by every controller that shares the store.
`last_used_at_ms` is written at most once a minute per operator.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from controller.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from controller.domain.names import show, validate_operator_slug
from controller.operators import BOOTSTRAP, ROLES, Actor
from controller.store.db import Database
from controller.store.operator_models import Operator
from mssp.common.clock import now_ms

TOKEN_PREFIX = "mssp_op_"
PREFIX_LEN = 12
LAST_USED_RESOLUTION_MS = 60_000


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class OperatorInfo:
    name: str
    role: str
    prefix: str
    created_at_ms: int
    created_by: str
    revoked_at_ms: int
    last_used_at_ms: int


def _info(row: Operator) -> OperatorInfo:
    return OperatorInfo(row.name, row.role, row.prefix, row.created_at_ms, row.created_by,
                        row.revoked_at_ms, row.last_used_at_ms)


def validate_operator_name(name: str) -> str:
    name = validate_operator_slug(name)
    if name == BOOTSTRAP:
        raise InvalidInput(f"operator name {show(name)} is reserved for the data dir's operator.token")
    return name


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {show(role)}: use one of {', '.join(ROLES)}")
    return role


class Operators:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, role: str, *, created_by: str) -> tuple[OperatorInfo, str]:
        """The new operator and its token (returned once)."""
        name, role = validate_operator_name(name), validate_role(role)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = Operator(id=uuid.uuid4().hex, name=name, role=role, token_hash=token_hash(token),
                       prefix=token[:PREFIX_LEN], created_at_ms=now_ms(), created_by=created_by)
        try:
            with self.db.session() as s:
                if s.exec(select(Operator.id).where(Operator.name == name)).first() is not None:
                    raise AlreadyExists(f"operator {show(name)} already exists (revoked names stay taken)")
                s.add(row)
                s.flush()
                info = _info(row)
        except IntegrityError:  # a concurrent create of the same name won
            raise AlreadyExists(f"operator {show(name)} already exists (revoked names stay taken)") from None
        return info, token

    def list(self, *, include_revoked: bool = False) -> list[OperatorInfo]:
        with self.db.session(readonly=True) as s:
            query = select(Operator).order_by(Operator.name)
            if not include_revoked:
                query = query.where(Operator.revoked_at_ms == 0)
            return [_info(r) for r in s.exec(query)]

    def revoke(self, name: str) -> OperatorInfo:
        if name == BOOTSTRAP:
            raise InvalidInput("the bootstrap credential is not revoked here: replace the data dir's "
                               "operator.token file and restart the controller")
        name = validate_operator_name(name)
        now = now_ms()
        with self.db.session() as s:
            done = s.exec(  # type: ignore[call-overload]
                update(Operator).where(col(Operator.name) == name, col(Operator.revoked_at_ms) == 0)
                .values(revoked_at_ms=now)
            )
            row = s.exec(select(Operator).where(Operator.name == name)).first()
            if row is None:
                raise NotFound(f"unknown operator {show(name)} (see `msspctl operator list`)")
            if done.rowcount != 1:
                raise Conflict(f"operator {show(name)} is already revoked")
            return _info(row)

    def identify(self, token: str) -> Actor | None:
        """The active operator holding `token`, or None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        now = now_ms()
        digest = token_hash(token)
        with self.db.session(readonly=True) as s:  # every call: no write lock for a read
            row = s.exec(select(Operator).where(Operator.token_hash == digest)).first()
        if row is None or row.revoked_at_ms:
            return None
        if row.last_used_at_ms < now - LAST_USED_RESOLUTION_MS:
            with self.db.session() as s:
                s.exec(  # type: ignore[call-overload]
                    update(Operator).where(col(Operator.id) == row.id,
                                           col(Operator.last_used_at_ms) < now - LAST_USED_RESOLUTION_MS)
                    .values(last_used_at_ms=now)
                )
        return Actor(row.name, row.role)
