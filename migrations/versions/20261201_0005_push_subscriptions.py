"""push subscriptions and their deliveries; events about no invoice

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00

- `subscriptions`: where the events a caller may read are POSTed, signed per Standard Webhooks.
- `subscription_deliveries`: one row per event (or ping) and subscription, written in the event's
  own statement; the push relay's queue, ordered per subscription by (txid, seq) as the feed is.
- `events.invoice_id` and `invoice_number` may be NULL: `subscription.disabled` is about no invoice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TXID = sa.text("(pg_current_xact_id()::text)::bigint")


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("sees_all_owners", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("profiles", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("previous_secret", sa.Text(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("seq", name=op.f("uq_subscriptions_seq")),
    )
    op.create_index("ix_subscriptions_owner_seq", "subscriptions", ["owner", "seq"])
    op.create_table(
        "subscription_deliveries",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("txid", sa.BigInteger(), server_default=TXID, nullable=False),
        sa.Column("subscription_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("state", sa.Text(), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "available_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "attempt_log",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('event', 'ping')", name=op.f("ck_subscription_deliveries_kind")
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'in_flight', 'succeeded', 'failed')",
            name=op.f("ck_subscription_deliveries_state"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_deliveries_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_subscription_deliveries_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_deliveries")),
        sa.UniqueConstraint("seq", name=op.f("uq_subscription_deliveries_seq")),
    )
    op.create_index(
        "ix_subscription_deliveries_due",
        "subscription_deliveries",
        ["available_at"],
        postgresql_where=sa.text("state IN ('pending', 'in_flight')"),
    )
    op.create_index(
        "ix_subscription_deliveries_order",
        "subscription_deliveries",
        ["subscription_id", "txid", "seq"],
    )
    # Dropping NOT NULL only changes the catalog: no rewrite, no long lock.
    op.alter_column("events", "invoice_id", existing_type=sa.BigInteger(), nullable=True)
    op.alter_column("events", "invoice_number", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    # Events about no invoice cannot stay in a table that wants an invoice for every event.
    op.execute("DELETE FROM events WHERE invoice_id IS NULL")
    op.alter_column("events", "invoice_number", existing_type=sa.Text(), nullable=False)
    op.alter_column("events", "invoice_id", existing_type=sa.BigInteger(), nullable=False)
    op.drop_index("ix_subscription_deliveries_order", table_name="subscription_deliveries")
    op.drop_index("ix_subscription_deliveries_due", table_name="subscription_deliveries")
    op.drop_table("subscription_deliveries")
    op.drop_index("ix_subscriptions_owner_seq", table_name="subscriptions")
    op.drop_table("subscriptions")
