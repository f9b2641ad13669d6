"""intel: indicator claims, allow-list, scheduled feeds

Revision ID: 0007_intel
Revises: 0006_tenant_api
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_intel"
down_revision = "0006_tenant_api"
branch_labels = None
depends_on = None


def _ms(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def _text(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.Text(), nullable=False, server_default="")


def upgrade() -> None:
    # uq_ioc_channel_value (channel, type, value) serves every lookup by channel: one b-tree fewer
    # to maintain per indicator in million-row imports.
    with op.batch_alter_table("ioc", schema=None) as batch_op:
        batch_op.drop_index("ix_ioc_channel")
    op.create_table(
        "ioc_claim",
        sa.Column("channel", sa.String(length=48), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=253), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        _ms("expires_at_ms"), _ms("created_at_ms"), _ms("last_seen_ms"),
        sa.Column("tlp", sa.String(length=12), nullable=False),
        sa.Column("decays", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("channel", "type", "value", "source"),
    )
    op.create_index("ix_ioc_claim_source", "ioc_claim", ["channel", "source"], unique=False)
    op.create_index("ix_ioc_claim_decay", "ioc_claim", ["decays", "confidence", "last_seen_ms"], unique=False)
    op.create_index("ix_ioc_claim_expires", "ioc_claim", ["expires_at_ms"], unique=False)
    op.add_column("ioc", sa.Column("updated_at_ms", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE ioc SET updated_at_ms = created_at_ms")
    op.create_index("ix_ioc_channel_changed", "ioc", ["channel", "updated_at_ms", "id"], unique=False)
    # Every indicator stored so far was added by one source: it becomes that source's claim.
    op.execute(
        "INSERT INTO ioc_claim (channel, type, value, source, confidence, expires_at_ms, created_at_ms,"
        " last_seen_ms, tlp, decays) SELECT channel, type, value, source, confidence, expires_at_ms,"
        " created_at_ms, created_at_ms, '', false FROM ioc"
    )
    op.create_table(
        "url_indicator",
        sa.Column("channel", sa.String(length=48), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        _text("url"),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("host_blocked", sa.Boolean(), nullable=False),
        _ms("first_seen_ms"), _ms("last_seen_ms"),
        sa.PrimaryKeyConstraint("channel", "url_hash", "source"),
    )
    op.create_table(
        "allow_entry",
        sa.Column("channel", sa.String(length=48), nullable=False),
        sa.Column("value", sa.String(length=253), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        _ms("created_at_ms"),
        sa.PrimaryKeyConstraint("channel", "value"),
    )
    op.create_table(
        "feed",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        _text("location"),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("column", sa.String(length=63), nullable=False),
        sa.Column("channel", sa.String(length=48), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("every_seconds", sa.Integer(), nullable=False),
        sa.Column("tlp", sa.String(length=12), nullable=False),
        sa.Column("token_env", sa.String(length=64), nullable=False, server_default=""),
        _text("etag"),
        sa.Column("last_modified", sa.String(length=64), nullable=False),
        _ms("next_run_ms"), _ms("last_run_ms"), _ms("last_success_ms"),
        _text("last_error"),
        sa.Column("entries", sa.Integer(), nullable=False),
        _ms("created_at_ms"),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_feed_next_run_ms", "feed", ["next_run_ms"], unique=False)
    for name in ("ioc_budget", "left_out_by_budget"):  # the device budget a gateway reports
        op.add_column("gateway", sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gateway", schema=None) as batch_op:
        batch_op.drop_column("left_out_by_budget")
        batch_op.drop_column("ioc_budget")
    op.drop_index("ix_feed_next_run_ms", table_name="feed")
    op.drop_table("feed")
    op.drop_table("allow_entry")
    op.drop_table("url_indicator")
    op.drop_index("ix_ioc_channel_changed", table_name="ioc")
    with op.batch_alter_table("ioc", schema=None) as batch_op:
        batch_op.drop_column("updated_at_ms")
    op.drop_index("ix_ioc_claim_expires", table_name="ioc_claim")
    op.drop_index("ix_ioc_claim_decay", table_name="ioc_claim")
    op.drop_index("ix_ioc_claim_source", table_name="ioc_claim")
    op.drop_table("ioc_claim")
    with op.batch_alter_table("ioc", schema=None) as batch_op:
        batch_op.create_index("ix_ioc_channel", ["channel"], unique=False)
