"""telemetry: batch idempotency keys, hourly rollups, daily usage and category bytes, gateway health,
detection events

Revision ID: 0002_telemetry
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_telemetry"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_batch_seen",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("batch_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("period_end_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", "batch_seq"),
    )
    op.create_index(
        "ix_telemetry_batch_seen_period_end_ms", "telemetry_batch_seen", ["period_end_ms"], unique=False
    )

    op.create_table(
        "rollup_hourly",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("hour_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.String(length=512), nullable=False),
        sa.Column("packets", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("bytes", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "metric", "hour_ms", "gateway_id", "dimension"),
        postgresql_with={"fillfactor": 70},  # room for HOT updates of the counters
    )

    op.create_table(
        "usage_daily",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("online", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("batches", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "day", "gateway_id"),
        postgresql_with={"fillfactor": 70},  # room for HOT updates of the counters
    )

    op.create_table(
        "category_daily",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.String(length=512), nullable=False),
        sa.Column("packets", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("bytes", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "day", "gateway_id", "dimension"),
        postgresql_with={"fillfactor": 70},  # room for HOT updates of the counters
    )

    op.create_table(
        "telemetry_gateway_health",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("batch_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("rss_bytes", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("cpu_seconds", sa.Float(), nullable=False),
        sa.Column("apply_errors", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("applied_global_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("applied_tenant_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("spool_drops", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("spool_depth", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id"),
    )
    op.create_index(
        "ix_telemetry_gateway_health_tenant_id", "telemetry_gateway_health", ["tenant_id"], unique=False
    )

    op.create_table(
        "detection_event",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=600), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key", name="uq_detection_event_dedupe"),
    )
    op.create_index("ix_detection_event_tenant_at", "detection_event", ["tenant_id", "at_ms"], unique=False)
    op.create_index("ix_detection_event_at", "detection_event", ["at_ms"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_detection_event_at", table_name="detection_event")
    op.drop_index("ix_detection_event_tenant_at", table_name="detection_event")
    op.drop_table("detection_event")
    op.drop_index("ix_telemetry_gateway_health_tenant_id", table_name="telemetry_gateway_health")
    op.drop_table("telemetry_gateway_health")
    op.drop_table("category_daily")
    op.drop_table("usage_daily")
    op.drop_index("ix_telemetry_batch_seen_period_end_ms", table_name="telemetry_batch_seen")
    op.drop_table("telemetry_batch_seen")
