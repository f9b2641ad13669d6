"""tenant api: API keys, billing periods and lines, report cache, daily rollups

Revision ID: 0006_tenant_api
Revises: 0005_lifecycle
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_tenant_api"
down_revision = "0005_lifecycle"
branch_labels = None
depends_on = None


def _ms(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("scopes", sa.String(length=300), nullable=False),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        _ms("created_at_ms"), _ms("expires_at_ms"), _ms("revoked_at_ms"),
        sa.Column("replaced_by", sa.String(length=32), nullable=False),
        _ms("last_used_at_ms"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_api_key_tenant_id", "api_key", ["tenant_id"], unique=False)
    op.create_table(
        "billing_period",
        sa.Column("period", sa.String(length=7), nullable=False),
        _ms("closed_at_ms"),
        sa.Column("plans", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("period"),
    )
    op.create_table(
        "billing_line",
        sa.Column("id", sa.String(length=160), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_name", sa.String(length=63), nullable=False),
        sa.Column("plan", sa.String(length=63), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        *(sa.Column(c, sa.String(length=40), nullable=False)
          for c in ("quantity", "included", "billable", "unit_price", "amount")),
        sa.Column("currency", sa.String(length=3), nullable=False),
        _ms("position"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_billing_line_period_tenant", "billing_line", ["period", "tenant_id"], unique=False)
    op.create_table(
        "billing_usage",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("usage_period", sa.String(length=7), nullable=False),
        sa.Column("meter", sa.String(length=32), nullable=False),
        sa.Column("billed_in", sa.String(length=7), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "usage_period", "meter", "billed_in"),
    )
    op.create_table(
        "report_cache",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        _ms("created_at_ms"),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "period", "kind"),
    )
    op.create_table(
        "rollup_daily",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("day_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.String(length=512), nullable=False),
        sa.Column("packets", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("bytes", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "metric", "day_ms", "gateway_id", "dimension"),
        postgresql_with={"fillfactor": 70},  # room for HOT updates of the counters
    )
    op.create_index("ix_rollup_daily_day_ms", "rollup_daily", ["day_ms"])
    op.execute(BACKFILL_DAILY)


# The days already in the hourly rollups (ingest writes both from now on).
BACKFILL_DAILY = """
INSERT INTO rollup_daily (tenant_id, metric, day_ms, gateway_id, dimension, packets, bytes, count)
SELECT tenant_id, metric, hour_ms - hour_ms % 86400000, gateway_id, dimension,
       sum(packets), sum(bytes), sum(count)
FROM rollup_hourly
GROUP BY tenant_id, metric, hour_ms - hour_ms % 86400000, gateway_id, dimension
"""


def downgrade() -> None:
    op.drop_index("ix_rollup_daily_day_ms", table_name="rollup_daily")
    op.drop_table("rollup_daily")
    op.drop_table("report_cache")
    op.drop_table("billing_usage")
    op.drop_index("ix_billing_line_period_tenant", table_name="billing_line")
    op.drop_table("billing_line")
    op.drop_table("billing_period")
    op.drop_index("ix_api_key_tenant_id", table_name="api_key")
    op.drop_table("api_key")
