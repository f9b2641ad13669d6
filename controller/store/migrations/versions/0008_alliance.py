"""alliance: tenants that share, the alliance channel's applied seq, re-issued gateway NATS JWTs

Revision ID: 0008_alliance
Revises: 0007_intel
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_alliance"
down_revision = "0007_intel"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sharing", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        batch_op.add_column(sa.Column("applied_alliance_seq", sa.BigInteger(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("nats_jwt_issued_s", sa.BigInteger(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("alliance_aware", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        batch_op.drop_column("alliance_aware")
        batch_op.drop_column("nats_jwt_issued_s")
        batch_op.drop_column("applied_alliance_seq")
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.drop_column("sharing")
