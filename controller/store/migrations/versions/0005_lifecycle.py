"""lifecycle: deleted tenants, retired gateway records

Revision ID: 0005_lifecycle
Revises: 0004_housekeeping
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_lifecycle"
down_revision = "0004_housekeeping"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A deleted tenant is hidden (its data kept for the retention period); its name stays reserved.
    op.add_column("tenant", sa.Column("deleted_at_ms", sa.BigInteger(), nullable=False, server_default="0"))
    # A retired gateway record (deleted, or replaced by a re-enrollment) stays as a revoked tombstone
    # so its certificate serial and NATS key stay refused; it frees its name for a new identity and
    # keeps it as former_name (telemetry history is still labelled with it).
    op.add_column("gateway", sa.Column("retired_at_ms", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column(
        "gateway", sa.Column("former_name", sa.String(length=63), nullable=False, server_default="")
    )


def downgrade() -> None:
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        batch_op.drop_column("former_name")
        batch_op.drop_column("retired_at_ms")
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.drop_column("deleted_at_ms")
