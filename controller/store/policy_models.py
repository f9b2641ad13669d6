"""Tables of policy history and per-gateway policy overrides. Times are epoch milliseconds.

Every stored policy document is a `policy_version` row: the tenant's policy (gateway_id "") or a
gateway's override (its gateway id; an empty document records that the override was removed).
Version numbers are the tenant's policy counter (tenant.policy_version), shared by the tenant's
policy and its overrides, so one number names one change. `policy_override` holds the override in
force for each gateway (deleted with the gateway).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class PolicyVersion(SQLModel, table=True):
    __tablename__ = "policy_version"
    __table_args__ = (
        UniqueConstraint("tenant_id", "version", name="uq_policy_version_tenant_version"),
        Index("ix_policy_version_target", "tenant_id", "gateway_id", "version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=32)
    gateway_id: str = Field(default="", max_length=32)  # "": the tenant's policy
    version: int = Field(sa_column=Column(BigInteger, nullable=False))
    yaml: str = Field(sa_column=Column(Text, nullable=False))  # "": the override was removed
    created_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_by: str = Field(max_length=63)
    summary: str = Field(default="", max_length=300)  # what changed against the target's previous version


class PolicyOverride(SQLModel, table=True):
    __tablename__ = "policy_override"

    gateway_id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(index=True, max_length=32)
    version: int = Field(sa_column=Column(BigInteger, nullable=False))
    yaml: str = Field(sa_column=Column(Text, nullable=False))
    updated_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
