"""renewal: gateway certificate validity, the certificate and NATS key a renewal replaced, and
whether the agent follows push-signing key rotations, and the router's clock offset

Revision ID: 0010_renewal
Revises: 0009_sightings
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_renewal"
down_revision = "0009_sightings"
branch_labels = None
depends_on = None

_BIGINTS = ("cert_not_before_ms", "cert_not_after_ms", "renewed_at_ms", "clock_offset_ms")


def upgrade() -> None:
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        for name in _BIGINTS:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("prev_cert_serial", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("prev_nats_public_key", sa.String(length=64), nullable=False,
                                      server_default=""))
        batch_op.create_index("ix_gateway_prev_cert_serial", ["prev_cert_serial"], unique=False)
        batch_op.add_column(sa.Column("rotation_aware", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        batch_op.drop_column("rotation_aware")
        batch_op.drop_index("ix_gateway_prev_cert_serial")
        batch_op.drop_column("prev_nats_public_key")
        batch_op.drop_column("prev_cert_serial")
        for name in reversed(_BIGINTS):
            batch_op.drop_column(name)
