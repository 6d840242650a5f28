"""Outcomes `unknown` and `superseded`, attempt counters per failure class, invoices' sync `unknown`

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 06:00:00

- `unknown`: the relay gave up on a command whose call may have reached Cybersource and no reading
  could tell whether it was applied; operators decide (it is not `failed`: it may well have been
  applied).
- `superseded`: the command was refused because a cancel got to the invoice first; nothing to
  re-drive.
- invoices `sync_state` `unknown`: the invoice's last command ended `unknown`.
- `failure_counts`: attempts per failure class ({"account": 2, "transient": 1}), so a class with a
  limit of its own (502 "General system failure", 401/403) counts only its own failures.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = "state IN ('pending', 'in_flight', 'succeeded', 'failed', 'unknown', 'superseded')"
OLD_STATES = "state IN ('pending', 'in_flight', 'succeeded', 'failed')"
SYNC_STATES = "sync_state IN ('pending', 'in_sync', 'failed', 'unknown')"
OLD_SYNC_STATES = "sync_state IN ('pending', 'in_sync', 'failed')"


def _replace_checks(checks: Sequence[tuple[str, str, str]]) -> None:
    """Swap CHECK constraints without scanning a table under an exclusive lock.

    Added NOT VALID (in force for new rows at once; the ACCESS EXCLUSIVE lock lasts only for the
    catalogue change), then validated in a transaction of its own, which takes only SHARE UPDATE
    EXCLUSIVE: writes go on while the existing rows are checked.
    """
    for table, name, condition in checks:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
    with op.get_context().autocommit_block():
        for table, name, _ in checks:
            op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "operations",
        sa.Column(
            "failure_counts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    _replace_checks(
        [
            ("operations", "ck_operations_state", STATES),
            ("invoices", "ck_invoices_sync_state", SYNC_STATES),
        ]
    )


def downgrade() -> None:
    # Nothing of the newer states can stay: an unknown command goes back to operators as failed, a
    # superseded one was refused by Cybersource (failed in the older model).
    op.execute("UPDATE operations SET state = 'failed' WHERE state IN ('unknown', 'superseded')")
    op.execute("UPDATE invoices SET sync_state = 'failed' WHERE sync_state = 'unknown'")
    op.drop_column("operations", "failure_counts")
    _replace_checks(
        [
            ("operations", "ck_operations_state", OLD_STATES),
            ("invoices", "ck_invoices_sync_state", OLD_SYNC_STATES),
        ]
    )
