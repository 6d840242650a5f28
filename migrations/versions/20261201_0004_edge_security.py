"""webhook receipts without bodies (purged after a retention), operations.traceparent

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 07:00:00

- `webhook_receipts.raw_body` goes: the body carried the payer's name, e-mail and payment link, and
  de-duplication needs only the digest of the signed content. `merchant_profile` says whose it was;
  the index on `received_at` serves the purge.
- `operations.traceparent`: the W3C trace context of the request that queued the command, so the
  relay continues that trace.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column("webhook_receipts", "raw_body")
    op.add_column(
        "webhook_receipts",
        sa.Column("merchant_profile", sa.Text(), server_default="default", nullable=False),
    )
    op.create_index("ix_webhook_receipts_received_at", "webhook_receipts", ["received_at"])
    op.add_column("operations", sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("operations", "traceparent")
    op.drop_index("ix_webhook_receipts_received_at", table_name="webhook_receipts")
    op.drop_column("webhook_receipts", "merchant_profile")
    # The bodies are gone for good; the column comes back empty.
    op.add_column(
        "webhook_receipts",
        sa.Column("raw_body", sa.Text(), server_default="", nullable=False),
    )
