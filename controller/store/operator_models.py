"""Tables of named operators and the audit log. Times are epoch milliseconds.

Only the SHA-256 of an operator token is stored (tokens are 256 random bits: no slow hash needed).
The bootstrap credential (operator.token in the data dir) is not a row: it is always the admin
named "bootstrap", so a store without operators can still be administered.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel


def _ms(*, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(BigInteger, nullable=False, default=0, server_default="0", index=index)


class Operator(SQLModel, table=True):
    __tablename__ = "operator"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(unique=True, max_length=63)
    role: str = Field(max_length=16)  # admin | read-only
    token_hash: str = Field(unique=True, max_length=64)  # sha256 hex of the whole token
    prefix: str = Field(max_length=20)  # the token's first characters, shown in listings
    created_at_ms: int = Field(sa_column=_ms())
    created_by: str = Field(default="", max_length=63)
    revoked_at_ms: int = Field(default=0, sa_column=_ms())  # 0: not revoked
    last_used_at_ms: int = Field(default=0, sa_column=_ms())


class AuditEvent(SQLModel, table=True):
    """One change made through the operator API: who, when, what, and the state before and after."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_tenant_at", "tenant", "at_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    at_ms: int = Field(sa_column=_ms(index=True))
    operator: str = Field(max_length=63)
    role: str = Field(max_length=16)
    action: str = Field(max_length=64)  # the call, e.g. "SetPolicy"
    tenant: str = Field(default="", max_length=63)  # "" when the change is not a tenant's
    target: str = Field(default="", max_length=200)  # what was changed, e.g. "acme/branch-1"
    request: str = Field(sa_column=Column(Text, nullable=False))  # JSON, secrets redacted
    before: str = Field(sa_column=Column(Text, nullable=False))  # JSON, "null" when it did not exist
    after: str = Field(sa_column=Column(Text, nullable=False))  # JSON, secrets redacted
