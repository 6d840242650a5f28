"""Caller references and metadata, receivables filters with their indexes, resumable imports

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:00:00

- `invoices.external_reference` (unique per merchant profile and owner) and `invoices.metadata` (a
  small string map): the caller's own, never sent to Cybersource.
- `invoices.merchant_customer_id`: `customerInformation.merchantCustomerId` as a column, for its
  filter (backfilled from the stored content).
- One index per receivables filter and sort, each led by `merchant_profile` (every list names one):
  newest first, status then newest first (several statuses are one ordered scan each), due date,
  amount, overdue (open invoices by due date), merchant customer id, e-mail in any case (replaces
  the case-sensitive `ix_invoices_customer_email`), metadata containment (GIN).
- `invoice_imports`: where `invoicing-gateway invoices import` stands, so a stopped import resumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_STATUSES = "status IN ('CREATED', 'SENT', 'PARTIAL', 'PENDING')"


def _indexes() -> list[tuple[str, list[sa.ColumnElement[object] | str], dict[str, object]]]:
    return [
        ("ix_invoices_profile_created", ["merchant_profile", "created_at", "id"], {}),
        ("ix_invoices_profile_status", ["merchant_profile", "status", "created_at", "id"], {}),
        ("ix_invoices_profile_due", ["merchant_profile", "due_date", "id"], {}),
        ("ix_invoices_profile_amount", ["merchant_profile", "total_amount", "id"], {}),
        (
            "ix_invoices_profile_overdue",
            ["merchant_profile", "due_date", "id"],
            {"postgresql_where": sa.text(OPEN_STATUSES)},
        ),
        (
            "ix_invoices_profile_customer_id",
            ["merchant_profile", "merchant_customer_id"],
            {"postgresql_where": sa.text("merchant_customer_id IS NOT NULL")},
        ),
        (
            "ix_invoices_profile_email",
            ["merchant_profile", sa.text("lower(customer_email)")],
            {},
        ),
        (
            "ix_invoices_metadata",
            ["metadata"],
            {"postgresql_using": "gin", "postgresql_ops": {"metadata": "jsonb_path_ops"}},
        ),
    ]


def upgrade() -> None:
    op.add_column("invoices", sa.Column("external_reference", sa.Text(), nullable=True))
    op.add_column(
        "invoices",
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("invoices", sa.Column("merchant_customer_id", sa.Text(), nullable=True))
    op.execute(
        "UPDATE invoices "
        "SET merchant_customer_id = content #>> '{customerInformation,merchantCustomerId}' "
        "WHERE content #>> '{customerInformation,merchantCustomerId}' IS NOT NULL"
    )
    op.create_table(
        "invoice_imports",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("merchant_profile", sa.Text(), nullable=False),
        sa.Column("status_filter", sa.Text(), nullable=True),
        sa.Column("since", sa.Date(), nullable=True),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("next_offset", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("adopted", sa.Integer(), server_default="0", nullable=False),
        sa.Column("already_known", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "started_at",
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
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_invoice_imports")),
    )
    # CONCURRENTLY (as 0002): building an index must not block invoice writes on a large table; it
    # cannot run in a transaction, hence the autocommit block.
    with op.get_context().autocommit_block():
        op.create_index(
            "uq_invoices_external_reference",
            "invoices",
            ["merchant_profile", "owner", "external_reference"],
            unique=True,
            postgresql_where=sa.text("external_reference IS NOT NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        for name, columns, options in _indexes():
            op.create_index(
                name,
                "invoices",
                columns,
                unique=False,
                postgresql_concurrently=True,
                if_not_exists=True,
                **options,
            )
        op.drop_index(
            "ix_invoices_customer_email",
            table_name="invoices",
            postgresql_concurrently=True,
            if_exists=True,
        )


def downgrade() -> None:
    op.create_index("ix_invoices_customer_email", "invoices", ["customer_email"], unique=False)
    for name, _columns, _options in _indexes():
        op.drop_index(name, table_name="invoices")
    op.drop_index("uq_invoices_external_reference", table_name="invoices")
    op.drop_table("invoice_imports")
    op.drop_column("invoices", "merchant_customer_id")
    op.drop_column("invoices", "metadata")
    op.drop_column("invoices", "external_reference")
