"""policy history: every stored policy version, and per-gateway overrides

Revision ID: 0012_policy_history
Revises: 0011_operators

Existing tenants' current policies become their first recorded version (plain SQL, so it runs the
same on SQLite and PostgreSQL; earlier versions were never kept).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_policy_history"
down_revision = "0011_operators"
branch_labels = None
depends_on = None

BACKFILL_SUMMARY = "recorded at upgrade (earlier versions were not kept)"


def upgrade() -> None:
    op.create_table(
        "policy_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("gateway_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.UniqueConstraint("tenant_id", "version", name="uq_policy_version_tenant_version"),
    )
    op.create_index("ix_policy_version_target", "policy_version", ["tenant_id", "gateway_id", "version"])
    op.create_table(
        "policy_override",
        sa.Column("gateway_id", sa.String(length=32), primary_key=True),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_policy_override_tenant_id", "policy_override", ["tenant_id"])
    op.execute(
        sa.text(
            "INSERT INTO policy_version "
            "(tenant_id, gateway_id, version, yaml, created_at_ms, created_by, summary) "
            "SELECT id, '', policy_version, policy_yaml, policy_updated_at_ms, '', :summary "
            "FROM tenant WHERE policy_version > 0 AND policy_yaml <> ''"
        ).bindparams(summary=BACKFILL_SUMMARY)
    )


def downgrade() -> None:
    op.drop_index("ix_policy_override_tenant_id", table_name="policy_override")
    op.drop_table("policy_override")
    op.drop_index("ix_policy_version_target", table_name="policy_version")
    op.drop_table("policy_version")
