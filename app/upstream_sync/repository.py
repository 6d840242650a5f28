"""What keeping up with Cybersource needs besides the invoice rows: webhook receipts, the
reconciler's queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from app.invoices.commands import RECONCILED_STATUSES
from app.kit.sql import BaseRepository

_OPEN = "(" + ", ".join(f"'{status}'" for status in RECONCILED_STATUSES) + ")"


@dataclass(frozen=True, slots=True)
class DueInvoice:
    """An open invoice the reconciler claimed; `checked_at` tells a newer observation apart
    later."""

    id: int
    merchant_profile: str
    invoice_number: str
    checked_at: datetime


class UpstreamSyncRepository(BaseRepository):
    async def webhook_receipt_exists(self, dedup_key: str) -> bool:
        return (
            await self._one("SELECT 1 FROM webhook_receipts WHERE dedup_key = :k", k=dedup_key)
            is not None
        )

    async def record_webhook_receipt(
        self, *, dedup_key: str, event_type: str, invoice_number: str | None, merchant_profile: str
    ) -> bool:
        """Remember an accepted notification; False when it was accepted before (a redelivery)."""
        row = await self._one(
            "INSERT INTO webhook_receipts "
            "(dedup_key, event_type, invoice_number, merchant_profile) "
            "VALUES (:k, :e, :n, :p) ON CONFLICT DO NOTHING RETURNING dedup_key",
            k=dedup_key,
            e=event_type,
            n=invoice_number,
            p=merchant_profile,
        )
        return row is not None

    async def purge_webhook_receipts(self, *, older_than_hours: float, batch: int) -> int:
        rows = await self._all(
            "DELETE FROM webhook_receipts WHERE dedup_key IN (SELECT dedup_key "
            "FROM webhook_receipts WHERE received_at < now() - make_interval(secs => :age) "
            "LIMIT :batch) RETURNING dedup_key",
            age=older_than_hours * 3600,
            batch=batch,
        )
        return len(rows)

    async def claim_invoices_to_reconcile(
        self, *, stale_seconds: float, limit: int
    ) -> list[DueInvoice]:
        """Open invoices not seen upstream for `stale_seconds` and with no command on its way,
        oldest first.

        Marking them seen now is the claim: another relay skips the locked rows and, once this
        commits, finds them fresh.
        """
        return await self._rows(
            DueInvoice,
            f"""
            UPDATE invoices i SET checked_at = now()
            FROM (SELECT id FROM invoices
                  WHERE status IN {_OPEN} AND sync_state <> 'pending'
                    AND checked_at < now() - make_interval(secs => :stale)
                  ORDER BY checked_at LIMIT :limit FOR UPDATE SKIP LOCKED) due
            WHERE i.id = due.id
            RETURNING i.id, i.merchant_profile, i.invoice_number, i.checked_at
            """,  # noqa: S608 (a constant list of statuses, no input)
            stale=stale_seconds,
            limit=limit,
        )


@dataclass(frozen=True, slots=True)
class ImportRow:
    """Where one import (`invoicing-gateway invoices import`) stands."""

    name: str
    merchant_profile: str
    status_filter: str | None
    since: date | None
    owner: str
    next_offset: int
    total: int | None
    adopted: int
    already_known: int
    skipped: int
    failed: int
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ImportRepository(BaseRepository):
    """The `invoice_imports` table: an import's position and counts, committed after every page."""

    async def get(self, name: str) -> ImportRow | None:
        return await self._row(ImportRow, "SELECT * FROM invoice_imports WHERE name = :n", n=name)

    async def start(
        self, *, name: str, profile: str, status: str | None, since: date | None, owner: str
    ) -> ImportRow:
        """A new import, or the same one again from the beginning (counts reset)."""
        row = await self._row(
            ImportRow,
            "INSERT INTO invoice_imports (name, merchant_profile, status_filter, since, owner) "
            "VALUES (:n, :p, :s, :d, :o) ON CONFLICT (name) DO UPDATE SET merchant_profile = :p, "
            "status_filter = :s, since = :d, owner = :o, next_offset = 0, total = NULL, "
            "adopted = 0, already_known = 0, skipped = 0, failed = 0, started_at = now(), "
            "updated_at = now(), finished_at = NULL RETURNING *",
            n=name,
            p=profile,
            s=status,
            d=since,
            o=owner,
        )
        assert row is not None
        return row

    async def advance(
        self,
        name: str,
        *,
        next_offset: int,
        total: int | None,
        adopted: int,
        already_known: int,
        skipped: int,
        failed: int,
        finished: bool,
    ) -> ImportRow:
        """Move past a page: its counts are added, the offset is where the next page starts."""
        row = await self._row(
            ImportRow,
            "UPDATE invoice_imports SET next_offset = :o, total = COALESCE(:t, total), "
            "adopted = adopted + :a, already_known = already_known + :k, skipped = skipped + :s, "
            "failed = failed + :f, updated_at = now(), "
            "finished_at = CASE WHEN :done THEN now() ELSE NULL END WHERE name = :n RETURNING *",
            n=name,
            o=next_offset,
            t=total,
            a=adopted,
            k=already_known,
            s=skipped,
            f=failed,
            done=finished,
        )
        assert row is not None
        return row
