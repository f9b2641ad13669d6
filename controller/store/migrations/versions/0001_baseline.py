"""baseline: tenants, gateways, enrollment tokens, IOCs, channels, push log

Revision ID: 0001_baseline
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel",
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # The global channel always exists; tenant channels are made with their tenant.
    op.bulk_insert(sa.table("channel", sa.column("name", sa.String), sa.column("seq", sa.BigInteger)),
                   [{"name": "global", "seq": 0}])
    op.create_table(
        "ioc",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=48), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=253), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "type", "value", name="uq_ioc_channel_value"),
    )
    with op.batch_alter_table("ioc", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ioc_channel"), ["channel"], unique=False)
        batch_op.create_index(batch_op.f("ix_ioc_expires_at_ms"), ["expires_at_ms"], unique=False)

    op.create_table(
        "push_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=48), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "seq", name="uq_push_channel_seq"),
    )
    with op.batch_alter_table("push_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_push_log_published"), ["published"], unique=False)

    op.create_table(
        "tenant",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("plan", sa.String(length=63), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("policy_version", sa.BigInteger(), nullable=False),
        sa.Column("policy_yaml", sa.Text(), nullable=False),
        sa.Column("policy_bundle", sa.LargeBinary(), nullable=False),
        sa.Column("policy_updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tenant_name"), ["name"], unique=True)

    op.create_table(
        "gateway",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("enrolled_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("cert_serial", sa.String(length=64), nullable=True),
        sa.Column("nats_public_key", sa.String(length=64), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("applied_global_seq", sa.BigInteger(), nullable=False),
        sa.Column("applied_tenant_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cert_serial"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_gateway_tenant_name"),
    )
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gateway_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "enrollment_token",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("gateway_id", sa.String(length=32), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateway.id"],
        ),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("enrollment_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrollment_token_gateway_id"), ["gateway_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("enrollment_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollment_token_gateway_id"))

    op.drop_table("enrollment_token")
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_tenant_id"))

    op.drop_table("gateway")
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tenant_name"))

    op.drop_table("tenant")
    with op.batch_alter_table("push_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_log_published"))

    op.drop_table("push_log")
    with op.batch_alter_table("ioc", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ioc_expires_at_ms"))
        batch_op.drop_index(batch_op.f("ix_ioc_channel"))

    op.drop_table("ioc")
    op.drop_table("channel")
