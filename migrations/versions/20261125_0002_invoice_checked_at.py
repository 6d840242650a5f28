"""invoices.checked_at: when Cybersource's state was last seen, for the status reconciler

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_STATUSES = "status IN ('CREATED', 'SENT', 'PARTIAL', 'PENDING')"


def upgrade() -> None:
    # A constant default (now() of this transaction): PostgreSQL adds the column without rewriting
    # the table.
    op.add_column(
        "invoices",
        sa.Column(
            "checked_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    # CONCURRENTLY: building the index must not block invoice writes on a large table; it cannot run
    # in a transaction, hence the autocommit block.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_invoices_open_checked",
            "invoices",
            ["checked_at"],
            unique=False,
            postgresql_where=sa.text(OPEN_STATUSES),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    op.drop_index("ix_invoices_open_checked", table_name="invoices")
    op.drop_column("invoices", "checked_at")
