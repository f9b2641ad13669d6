"""CA rollover: which CA signed each gateway's certificate, and whether its agent follows a rollover

Revision ID: 0013_ca_rollover
Revises: 0012_policy_history
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_ca_rollover"
down_revision = "0012_policy_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cert_ca", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("ca_rollover_aware", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        batch_op.drop_column("ca_rollover_aware")
        batch_op.drop_column("cert_ca")
