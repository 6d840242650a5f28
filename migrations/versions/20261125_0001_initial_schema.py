"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 08:37:57.861059
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Invoice numbers come from a sequence by default; the counter table is the opt-in gap-free
    # mode.
    op.execute(sa.schema.CreateSequence(sa.Sequence("invoice_number_seq", start=1)))
    op.create_table(
        "idempotency_records",
        sa.Column("client", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default="processing", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operation_id", sa.UUID(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_headers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("response_body", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('processing', 'completed')", name=op.f("ck_idempotency_records_state")
        ),
        sa.PrimaryKeyConstraint("client", "key", name=op.f("pk_idempotency_records")),
    )
    op.create_index(
        "ix_idempotency_records_created_at", "idempotency_records", ["created_at"], unique=False
    )
    op.create_table(
        "invoice_number_counters",
        sa.Column("merchant_profile", sa.Text(), nullable=False),
        sa.Column("last_value", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("merchant_profile", name=op.f("pk_invoice_number_counters")),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("merchant_profile", sa.Text(), nullable=False),
        sa.Column("invoice_number", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("sync_state", sa.Text(), server_default="pending", nullable=False),
        sa.Column("last_error", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("payment_link", sa.Text(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("total_amount", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("balance_amount", sa.Numeric(precision=19, scale=4), nullable=True),
        sa.Column("customer_email", sa.Text(), nullable=True),
        sa.Column("customer_name", sa.Text(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("content", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("upstream", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
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
        sa.CheckConstraint(
            "sync_state IN ('pending', 'in_sync', 'failed')", name=op.f("ck_invoices_sync_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint(
            "merchant_profile",
            "invoice_number",
            name=op.f("uq_invoices_merchant_profile_invoice_number"),
        ),
    )
    op.create_index("ix_invoices_customer_email", "invoices", ["customer_email"], unique=False)
    op.create_index("ix_invoices_owner_created", "invoices", ["owner", "created_at"], unique=False)
    op.create_index(
        "ix_invoices_status_created", "invoices", ["status", "created_at"], unique=False
    )
    op.create_table(
        "webhook_receipts",
        sa.Column("dedup_key", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("invoice_number", sa.Text(), nullable=True),
        sa.Column("raw_body", sa.Text(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("dedup_key", name=op.f("pk_webhook_receipts")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "txid",
            sa.BigInteger(),
            server_default=sa.text("(pg_current_xact_id()::text)::bigint"),
            nullable=False,
        ),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("invoice_id", sa.BigInteger(), nullable=False),
        sa.Column("invoice_number", sa.Text(), nullable=False),
        sa.Column("merchant_profile", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("operation_id", sa.UUID(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_events_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_txid_id", "events", ["txid", "id"], unique=False)
    op.create_table(
        "operations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("invoice_id", sa.BigInteger(), nullable=False),
        sa.Column("merchant_profile", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "available_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("needs_reconcile", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("baseline", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("last_error", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
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
            "kind IN ('create', 'update', 'publish', 'send', 'cancel')",
            name=op.f("ck_operations_kind"),
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'in_flight', 'succeeded', 'failed')",
            name=op.f("ck_operations_state"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_operations_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
        sa.UniqueConstraint("seq", name=op.f("uq_operations_seq")),
    )
    op.create_index(
        "ix_operations_due",
        "operations",
        ["available_at"],
        unique=False,
        postgresql_where=sa.text("state IN ('pending', 'in_flight')"),
    )
    op.create_index(
        "ix_operations_failed",
        "operations",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("state = 'failed'"),
    )
    op.create_index("ix_operations_invoice_seq", "operations", ["invoice_id", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_operations_invoice_seq", table_name="operations")
    op.drop_index(
        "ix_operations_failed",
        table_name="operations",
        postgresql_where=sa.text("state = 'failed'"),
    )
    op.drop_index(
        "ix_operations_due",
        table_name="operations",
        postgresql_where=sa.text("state IN ('pending', 'in_flight')"),
    )
    op.drop_table("operations")
    op.drop_index("ix_events_txid_id", table_name="events")
    op.drop_table("events")
    op.drop_table("webhook_receipts")
    op.drop_index("ix_invoices_status_created", table_name="invoices")
    op.drop_index("ix_invoices_owner_created", table_name="invoices")
    op.drop_index("ix_invoices_customer_email", table_name="invoices")
    op.drop_table("invoices")
    op.drop_table("invoice_number_counters")
    op.drop_index("ix_idempotency_records_created_at", table_name="idempotency_records")
    op.drop_table("idempotency_records")
    op.execute(sa.schema.DropSequence(sa.Sequence("invoice_number_seq")))
