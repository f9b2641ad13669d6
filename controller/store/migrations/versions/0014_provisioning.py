"""provisioning: SSH targets with pinned host keys, provisioning runs and their per-host results

Revision ID: 0014_provisioning
Revises: 0013_ca_rollover
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_provisioning"
down_revision = "0013_ca_rollover"
branch_labels = None
depends_on = None


def _ms(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "ssh_target",
        sa.Column("gateway_id", sa.String(length=32), sa.ForeignKey("gateway.id"), primary_key=True),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=32), nullable=False),
        sa.Column("jump", sa.String(length=300), nullable=False),
        sa.Column("prefix", sa.String(length=255), nullable=False),
        sa.Column("host_key", sa.Text(), nullable=False, server_default=""),
        sa.Column("host_key_fingerprint", sa.String(length=64), nullable=False),
        _ms("host_key_seen_at_ms"),
        _ms("updated_at_ms"),
    )
    op.create_table(
        "provision_run",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("operator", sa.String(length=63), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _ms("started_at_ms"),
        _ms("finished_at_ms"),
    )
    op.create_index("ix_provision_run_tenant_started", "provision_run", ["tenant_id", "started_at_ms"])
    op.create_table(
        "provision_run_host",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(length=32), sa.ForeignKey("provision_run.id"), nullable=False),
        sa.Column("gateway", sa.String(length=63), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.Column("seconds", sa.Float(), nullable=False, server_default="0"),
    )
    op.create_index("ix_provision_run_host_run_id", "provision_run_host", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_provision_run_host_run_id", table_name="provision_run_host")
    op.drop_table("provision_run_host")
    op.drop_index("ix_provision_run_tenant_started", table_name="provision_run")
    op.drop_table("provision_run")
    op.drop_table("ssh_target")
