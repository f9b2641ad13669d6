"""Telemetry tables. Self-contained: keyed by tenant/gateway id strings, no foreign keys, so the hot
ingest path never touches (or locks) the fleet tables and rollups outlive a deleted gateway for billing.

Times are epoch milliseconds (as in controller/store/models.py); a usage day is its UTC calendar date
"YYYY-MM-DD", which is what an invoice line names.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

ID_LEN = 64
METRIC_LEN = 32
DIMENSION_LEN = 512
SUBJECT_LEN = 300
HOST_LEN = 64
DEDUPE_LEN = 600
# Counter rows are updated in place all hour long. Free space in each page lets PostgreSQL make those
# heap-only (HOT) updates: no index write per update, and much less bloat.
HOT_UPDATES = {"fillfactor": 70}


def _bigint(*, primary_key: bool = False, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(BigInteger, nullable=False, primary_key=primary_key, index=index, autoincrement=False)


class TelemetryBatchSeen(SQLModel, table=True):
    """The database-side idempotency key: a batch is folded in the transaction that inserts this row,
    so a redelivered, replayed or re-sent batch finds it and counts zero times more."""

    __tablename__ = "telemetry_batch_seen"

    gateway_id: str = Field(primary_key=True, max_length=ID_LEN)
    batch_seq: int = Field(sa_column=_bigint(primary_key=True))
    tenant_id: str = Field(max_length=ID_LEN)
    period_end_ms: int = Field(sa_column=_bigint(index=True))  # drives retention (see retention.py)
    received_at_ms: int = Field(sa_column=_bigint())


class RollupHourly(SQLModel, table=True):
    """Counter deltas summed per tenant, metric, UTC hour, gateway and dimension. The key order serves
    "top X for tenant T since S" straight from the primary key; retention deletes by hour_ms alone,
    which needs its own index (hour_ms never changes in an update, so updates stay HOT)."""

    __tablename__ = "rollup_hourly"
    __table_args__ = (Index("ix_rollup_hourly_hour_ms", "hour_ms"), {"postgresql_with": HOT_UPDATES})

    tenant_id: str = Field(primary_key=True, max_length=ID_LEN)
    metric: str = Field(primary_key=True, max_length=METRIC_LEN)
    hour_ms: int = Field(sa_column=_bigint(primary_key=True))
    gateway_id: str = Field(primary_key=True, max_length=ID_LEN)
    dimension: str = Field(primary_key=True, max_length=DIMENSION_LEN)
    packets: int = Field(default=0, sa_column=_bigint())
    bytes: int = Field(default=0, sa_column=_bigint())
    count: int = Field(default=0, sa_column=_bigint())


class RollupDaily(SQLModel, table=True):
    """The hourly rollups summed per UTC day, written in the same transaction: a month's report reads
    30 rows per gateway and dimension instead of 720, so the tenant API's cost per request stays
    small whatever the table holds."""

    __tablename__ = "rollup_daily"
    __table_args__ = (Index("ix_rollup_daily_day_ms", "day_ms"), {"postgresql_with": HOT_UPDATES})

    tenant_id: str = Field(primary_key=True, max_length=ID_LEN)
    metric: str = Field(primary_key=True, max_length=METRIC_LEN)
    day_ms: int = Field(sa_column=_bigint(primary_key=True))  # 00:00 UTC of the day
    gateway_id: str = Field(primary_key=True, max_length=ID_LEN)
    dimension: str = Field(primary_key=True, max_length=DIMENSION_LEN)
    packets: int = Field(default=0, sa_column=_bigint())
    bytes: int = Field(default=0, sa_column=_bigint())
    count: int = Field(default=0, sa_column=_bigint())


class UsageDaily(SQLModel, table=True):
    """Billing: egress bytes and time reported per gateway and UTC day (a gateway-day is a row with
    online > 0)."""

    __tablename__ = "usage_daily"
    __table_args__ = ({"postgresql_with": HOT_UPDATES},)

    tenant_id: str = Field(primary_key=True, max_length=ID_LEN)
    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD (UTC)
    gateway_id: str = Field(primary_key=True, max_length=ID_LEN)
    bytes: int = Field(default=0, sa_column=_bigint())
    online: int = Field(default=0, sa_column=_bigint())  # seconds covered by batches
    batches: int = Field(default=0, sa_column=_bigint())


class CategoryDaily(SQLModel, table=True):
    """Bytes per category and LAN host per UTC day: the upload-threshold check reads the new total back
    from its upsert (RETURNING) instead of summing 24 hourly rows per host on every batch."""

    __tablename__ = "category_daily"
    __table_args__ = ({"postgresql_with": HOT_UPDATES},)

    tenant_id: str = Field(primary_key=True, max_length=ID_LEN)
    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD (UTC)
    gateway_id: str = Field(primary_key=True, max_length=ID_LEN)
    dimension: str = Field(primary_key=True, max_length=DIMENSION_LEN)  # "<category>|<host>"
    packets: int = Field(default=0, sa_column=_bigint())
    bytes: int = Field(default=0, sa_column=_bigint())


class GatewayHealth(SQLModel, table=True):
    """The newest agent health per gateway (by batch seq, so a late replay never overwrites it)."""

    __tablename__ = "telemetry_gateway_health"

    gateway_id: str = Field(primary_key=True, max_length=ID_LEN)
    tenant_id: str = Field(index=True, max_length=ID_LEN)
    batch_seq: int = Field(sa_column=_bigint())
    at_ms: int = Field(sa_column=_bigint())
    rss_bytes: int = Field(default=0, sa_column=_bigint())
    cpu_seconds: float = Field(default=0.0, sa_column=Column(Float, nullable=False))
    apply_errors: int = Field(default=0, sa_column=_bigint())
    applied_global_seq: int = Field(default=0, sa_column=_bigint())
    applied_tenant_seq: int = Field(default=0, sa_column=_bigint())
    spool_drops: int = Field(default=0, sa_column=_bigint())
    spool_depth: int = Field(default=0, sa_column=_bigint())
    agent_version: str = Field(default="", max_length=64)


class DetectionEvent(SQLModel, table=True):
    """IOC hits and upload-threshold crossings. `dedupe_key` makes each (kind, gateway, host, subject,
    day) one event however many batches report it; old events are purged (retention)."""

    __tablename__ = "detection_event"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_detection_event_dedupe"),
        Index("ix_detection_event_tenant_at", "tenant_id", "at_ms"),
        Index("ix_detection_event_at", "at_ms"),
    )

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=ID_LEN)
    gateway_id: str = Field(max_length=ID_LEN)
    kind: str = Field(max_length=32)  # ioc_hit | upload_threshold
    subject: str = Field(sa_column=Column(String(SUBJECT_LEN), nullable=False))
    host: str = Field(max_length=HOST_LEN)
    at_ms: int = Field(sa_column=_bigint())
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    dedupe_key: str = Field(sa_column=Column(String(DEDUPE_LEN), nullable=False))
