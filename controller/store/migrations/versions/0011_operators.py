"""operators: named operator credentials with roles, and the audit log of changes

Revision ID: 0011_operators
Revises: 0010_renewal
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_operators"
down_revision = "0010_renewal"
branch_labels = None
depends_on = None


def _ms(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "operator",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("name", sa.String(length=63), nullable=False, unique=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        _ms("created_at_ms"),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        _ms("revoked_at_ms"),
        _ms("last_used_at_ms"),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ms("at_ms"),
        sa.Column("operator", sa.String(length=63), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("before", sa.Text(), nullable=False),
        sa.Column("after", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_event_at_ms", "audit_event", ["at_ms"])
    op.create_index("ix_audit_event_tenant_at", "audit_event", ["tenant", "at_ms"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_tenant_at", table_name="audit_event")
    op.drop_index("ix_audit_event_at_ms", table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_table("operator")
