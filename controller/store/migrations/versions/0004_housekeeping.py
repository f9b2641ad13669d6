"""housekeeping: job leases, indexes for the periodic deletes

Revision ID: 0004_housekeeping
Revises: 0003_hardening
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_housekeeping"
down_revision = "0003_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per housekeeping job: which controller runs it until when (controller/store/lease.py).
    op.create_table(
        "housekeeping_lease",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job"),
    )
    # Tokens past expiry (plus a grace) are deleted by expires_at_ms.
    with op.batch_alter_table("enrollment_token", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_enrollment_token_expires_at_ms"), ["expires_at_ms"], unique=False
        )
    # Rollup retention deletes by hour_ms, which is not the primary key's leading column.
    op.create_index("ix_rollup_hourly_hour_ms", "rollup_hourly", ["hour_ms"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rollup_hourly_hour_ms", table_name="rollup_hourly")
    with op.batch_alter_table("enrollment_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollment_token_expires_at_ms"))
    op.drop_table("housekeeping_lease")
