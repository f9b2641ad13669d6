"""Tables of herd immunity: what each gateway hit (``sighting``) and, per indicator, the candidate
those sightings add up to and what became of it (``sighting_candidate``).

A sighting is kept per (indicator, tenant, gateway, LAN host): first and last seen, how often. The
operator sees them all; a tenant sees its own; nobody else ever learns who saw what.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def _ms(*, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(BigInteger, nullable=False, default=0, server_default="0", index=index)


class Sighting(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("type", "value", "tenant_id", "gateway_id", "host", "via",
                                       name="uq_sighting"),
                      Index("ix_sighting_tenant_seen", "tenant_id", "last_seen_ms"))

    id: int | None = Field(default=None, primary_key=True)
    type: int
    value: str = Field(max_length=253)
    tenant_id: str = Field(max_length=32)
    gateway_id: str = Field(max_length=32)
    host: str = Field(default="", max_length=45)
    via: str = Field(default="firewall", max_length=16)
    count: int = Field(sa_column=Column(BigInteger, nullable=False, default=0, server_default="0"))
    score: int = Field(default=0)  # via "beacon": the router's periodicity score
    first_seen_ms: int = Field(sa_column=_ms())
    last_seen_ms: int = Field(sa_column=_ms())


class FalsePositive(SQLModel, table=True):
    """A tenant said this shared indicator is a false positive (controller/services/false_positives.py)."""

    __tablename__ = "false_positive"

    tenant_id: str = Field(primary_key=True, max_length=32)
    type: int = Field(primary_key=True)
    value: str = Field(primary_key=True, max_length=253)
    reported_at_ms: int = Field(sa_column=_ms())
    by: str = Field(default="tenant", max_length=12)  # tenant (its API key) | operator


class SightingCandidate(SQLModel, table=True):
    __tablename__ = "sighting_candidate"
    __table_args__ = (UniqueConstraint("type", "value", name="uq_sighting_candidate"),
                      Index("ix_sighting_candidate_state", "state", "last_seen_ms"))

    id: str = Field(primary_key=True, max_length=32)
    type: int
    value: str = Field(max_length=253)
    state: str = Field(default="candidate", max_length=12)  # candidate | promoted | dismissed
    confidence: int = Field(default=0)
    first_seen_ms: int = Field(sa_column=_ms())
    last_seen_ms: int = Field(sa_column=_ms())
    scope: str = Field(default="", max_length=12)  # where it was promoted to
    decided_by: str = Field(default="", max_length=12)  # policy | operator
    decided_at_ms: int = Field(sa_column=_ms())
    reason: str = Field(default="", max_length=200)
