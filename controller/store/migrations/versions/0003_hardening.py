"""hardening: refusal reports, outbox errors, telemetry bounds, revocation bookkeeping

Revision ID: 0003_hardening
Revises: 0002_telemetry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_hardening"
down_revision = "0002_telemetry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # --- section A (refused rules/elements in gateway status) ---
    op.add_column("gateway", sa.Column("refusals", sa.Text(), nullable=False, server_default=""))
    op.add_column(
        "gateway", sa.Column("refusals_total", sa.BigInteger(), nullable=False, server_default="0")
    )
    # --- end A ---
    # --- section C (outbox publish errors, multi-part pushes) ---
    op.add_column("push_log", sa.Column("publish_error", sa.Text(), nullable=False, server_default=""))
    # --- end C ---
    # --- section E (telemetry bounds and ids) ---
    # --- end E ---
    # --- section F (revocation, NATS limits) ---
    import time

    op.add_column(
        "gateway", sa.Column("revoked_at_ms", sa.BigInteger(), nullable=False, server_default="0")
    )
    # Gateways revoked before this column existed: revoked "now" (every JWT issued so far dies).
    op.execute(
        sa.text("UPDATE gateway SET revoked_at_ms = :now WHERE status = 'revoked'").bindparams(
            now=int(time.time() * 1000)
        )
    )
    # --- end F ---
    pass


def downgrade() -> None:
    # --- section A ---
    with op.batch_alter_table("gateway") as batch_op:
        batch_op.drop_column("refusals_total")
        batch_op.drop_column("refusals")
    # --- end A ---
    # --- section C ---
    with op.batch_alter_table("push_log") as batch_op:
        batch_op.drop_column("publish_error")
    # --- end C ---
    # --- section E ---
    # --- end E ---
    # --- section F ---
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        batch_op.drop_column("revoked_at_ms")
    # --- end F ---
    pass
