"""Tables of the tenant API: API keys, closed billing periods and their frozen lines, and the cache of
rendered reports. Times are epoch milliseconds; amounts are exact decimal strings (no float money).

A closed period is a row in `billing_period` (its primary key makes closing one-time under
concurrency); `billing_line` holds the invoice lines frozen with it and `billing_usage` the raw
quantities billed for each usage period (the close of a later period adds the late-telemetry deltas
as adjustments), so "what was billed for October" is one sum whatever month billed it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, String, Text
from sqlmodel import Field, SQLModel

MONEY_LEN = 40


def _ms(*, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(BigInteger, nullable=False, default=0, server_default="0", index=index)


class ApiKey(SQLModel, table=True):
    """Only the SHA-256 of a key is stored (keys are 190 random bits: no slow hash needed)."""

    __tablename__ = "api_key"

    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=16)  # tenant | partner
    tenant_id: str = Field(default="", index=True, max_length=32)  # "" for a partner key
    name: str = Field(default="", max_length=63)
    scopes: str = Field(max_length=300)  # comma separated, sorted
    prefix: str = Field(max_length=20)  # the key's first characters, shown in listings
    key_hash: str = Field(unique=True, max_length=64)  # sha256 hex of the whole key
    created_at_ms: int = Field(sa_column=_ms())
    expires_at_ms: int = Field(default=0, sa_column=_ms())  # 0: never
    revoked_at_ms: int = Field(default=0, sa_column=_ms())  # 0: not revoked
    replaced_by: str = Field(default="", max_length=32)  # set once, by a rotation
    last_used_at_ms: int = Field(default=0, sa_column=_ms())


class BillingPeriod(SQLModel, table=True):
    __tablename__ = "billing_period"

    period: str = Field(primary_key=True, max_length=7)  # YYYY-MM
    closed_at_ms: int = Field(sa_column=_ms())
    plans: str = Field(sa_column=Column(Text, nullable=False))  # the plan book in force, as JSON


class BillingLine(SQLModel, table=True):
    __tablename__ = "billing_line"
    __table_args__ = (Index("ix_billing_line_period_tenant", "period", "tenant_id"),)

    id: str = Field(primary_key=True, max_length=160)  # "<tenant id>:<period>:<meter>": stable
    period: str = Field(max_length=7)
    tenant_id: str = Field(max_length=32)
    tenant_name: str = Field(max_length=63)
    plan: str = Field(max_length=63)
    meter: str = Field(max_length=64)
    description: str = Field(sa_column=Column(String(200), nullable=False))
    quantity: str = Field(max_length=MONEY_LEN)
    included: str = Field(max_length=MONEY_LEN)
    billable: str = Field(max_length=MONEY_LEN)
    unit_price: str = Field(max_length=MONEY_LEN)
    amount: str = Field(max_length=MONEY_LEN)
    currency: str = Field(max_length=3)
    position: int = Field(default=0, sa_column=_ms())  # order of lines within a tenant's invoice


class BillingUsage(SQLModel, table=True):
    """Raw quantities billed: per tenant, usage period and meter, and the period whose close billed
    them (the usage period itself, or a later one for an adjustment)."""

    __tablename__ = "billing_usage"

    tenant_id: str = Field(primary_key=True, max_length=32)
    usage_period: str = Field(primary_key=True, max_length=7)
    meter: str = Field(primary_key=True, max_length=32)
    billed_in: str = Field(primary_key=True, max_length=7)
    quantity: int = Field(sa_column=Column(BigInteger, nullable=False))


class ReportCache(SQLModel, table=True):
    """Rendered reports of closed periods (they never change): first render once, then served."""

    __tablename__ = "report_cache"

    tenant_id: str = Field(primary_key=True, max_length=32)
    period: str = Field(primary_key=True, max_length=7)
    kind: str = Field(primary_key=True, max_length=16)  # monthly.html | monthly.pdf
    created_at_ms: int = Field(sa_column=_ms())
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
