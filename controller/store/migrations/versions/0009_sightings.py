"""sightings: what gateways hit, the promotion candidates they add up to, tenants' false positives

Revision ID: 0009_sightings
Revises: 0008_alliance
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_sightings"
down_revision = "0008_alliance"
branch_labels = None
depends_on = None


def _ms(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "sighting",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=253), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("gateway_id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=45), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("score", sa.Integer(), nullable=False, server_default="0"),
        _ms("first_seen_ms"), _ms("last_seen_ms"),
        sa.UniqueConstraint("type", "value", "tenant_id", "gateway_id", "host", "via", name="uq_sighting"),
    )
    op.create_index("ix_sighting_tenant_seen", "sighting", ["tenant_id", "last_seen_ms"])
    op.create_table(
        "sighting_candidate",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=253), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        _ms("first_seen_ms"), _ms("last_seen_ms"),
        sa.Column("scope", sa.String(length=12), nullable=False),
        sa.Column("decided_by", sa.String(length=12), nullable=False),
        _ms("decided_at_ms"),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.UniqueConstraint("type", "value", name="uq_sighting_candidate"),
    )
    op.create_index("ix_sighting_candidate_state", "sighting_candidate", ["state", "last_seen_ms"])
    op.create_table(
        "false_positive",
        sa.Column("tenant_id", sa.String(length=32), primary_key=True),
        sa.Column("type", sa.Integer(), primary_key=True),
        sa.Column("value", sa.String(length=253), primary_key=True),
        _ms("reported_at_ms"),
        sa.Column("by", sa.String(length=12), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("false_positive")
    op.drop_index("ix_sighting_candidate_state", table_name="sighting_candidate")
    op.drop_table("sighting_candidate")
    op.drop_index("ix_sighting_tenant_seen", table_name="sighting")
    op.drop_table("sighting")
