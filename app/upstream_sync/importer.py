"""`invoicing-gateway invoices import`: adopt, in bulk, the invoices Cybersource lists for a
merchant.

Pages through Cybersource's list (`offset`/`limit`, optionally one `status`), skips what the store
has (one query per page) and what was created before `--since` (the list item's `createdDate`),
reads each other invoice and adopts it (`adoption.py`). Cybersource calls are spaced to at most
`rate` per second.

Resumable: where the import stands (`invoice_imports`: the next offset and the counts) is committed
after every page, so a stopped import (Ctrl-C, a crash, an outage, `--max-invoices`) continues at
the page it was on when run again with the same name; an import that finished starts over (what it
adopted is then already known, and only new invoices are read). Cybersource lists newest first: an
invoice made while an import runs pushes the others one place on, so a page may be read twice, never
skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from app.cybersource.client import CybersourceClient, CybersourceClients
from app.cybersource.errors import CybersourceError, RejectedError
from app.db import Database
from app.invoices.repository import InvoiceRepository
from app.invoices.upstream_state import UpstreamState
from app.observability.logging import get_logger
from app.settings import Settings
from app.upstream_sync.adoption import NotAdoptable, adopt_into_store
from app.upstream_sync.repository import ImportRepository, ImportRow

log = get_logger(__name__)


class ImportFailed(Exception):
    """Cybersource could not be listed; the import stopped where it was (run it again to resume)."""


@dataclass(frozen=True, slots=True)
class ImportOptions:
    profile: str = "default"
    status: str | None = None
    since: date | None = None
    owner: str | None = None  # default: ADOPT_OWNER
    page_size: int = 100
    rate: float = 5.0  # Cybersource calls per second, at most
    name: str | None = None  # default: derived from profile, status and since
    restart: bool = False
    max_invoices: int | None = None  # stop (resumably) after adopting this many

    @property
    def import_name(self) -> str:
        since = self.since.isoformat() if self.since else "any"
        return self.name or f"{self.profile}:{self.status or 'all'}:{since}"


class Pacer:
    """At most `rate` calls per second: each call waits for its slot."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def slot(self) -> None:
        now = time.monotonic()
        wait = self._next - now
        self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


def _created_before(item: dict[str, Any], since: date | None) -> bool:
    text = item.get("createdDate")
    if since is None or not isinstance(text, str):
        return False
    try:
        created = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return created.astimezone(UTC).date() < since


class Importer:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        clients: CybersourceClients,
        options: ImportOptions,
        progress: Callable[[str], None],
    ) -> None:
        self.database = database
        self.settings = settings
        self.client: CybersourceClient = clients.get(options.profile)
        self.options = options
        self.progress = progress
        self.pacer = Pacer(options.rate)
        self.owner = options.owner or settings.adopt_owner

    async def _begin(self) -> ImportRow:
        options = self.options
        async with self.database.engine.begin() as conn:
            imports = ImportRepository(conn)
            row = await imports.get(options.import_name)
            if row is not None and row.finished_at is None and not options.restart:
                self.progress(
                    f"resuming import {row.name!r} at offset {row.next_offset} "
                    f"({row.adopted} adopted so far)"
                )
                return row
            row = await imports.start(
                name=options.import_name,
                profile=options.profile,
                status=options.status,
                since=options.since,
                owner=self.owner,
            )
        self.progress(f"starting import {row.name!r} for merchant profile {options.profile!r}")
        return row

    async def _page(self, offset: int) -> tuple[int | None, list[dict[str, Any]]]:
        await self.pacer.slot()
        try:
            page = await self.client.list_invoices(
                offset=offset, limit=self.options.page_size, status=self.options.status
            )
        except RejectedError as exc:
            if exc.status == 404:  # Cybersource answers 404 when nothing (more) matches
                return None, []
            raise ImportFailed(f"Cybersource refused the list at offset {offset}: {exc}") from exc
        except CybersourceError as exc:
            raise ImportFailed(
                f"Cybersource could not be listed at offset {offset}: {exc}"
            ) from exc
        raw = page.raw if isinstance(page.raw, dict) else {}
        items = [item for item in raw.get("invoices") or [] if isinstance(item, dict)]
        total = raw.get("totalInvoices")
        return (total if isinstance(total, int) else None), items

    async def _adopt_one(self, number: str) -> bool:
        """Read and adopt one invoice; False when it could not be (logged, counted as failed)."""
        await self.pacer.slot()
        try:
            result = await self.client.get_invoice(number)
            state = UpstreamState.from_body(result.raw)
            async with self.database.engine.begin() as conn:
                await adopt_into_store(
                    conn,
                    profile=self.options.profile,
                    number=number,
                    owner=self.owner,
                    state=state,
                    adopted_by="import",
                )
        except (CybersourceError, NotAdoptable) as exc:
            log.warning("import.adopt_failed", invoice_number=number, reason=str(exc))
            self.progress(f"  could not adopt {number}: {exc}")
            return False
        return True

    async def run(self) -> ImportRow:
        row = await self._begin()
        offset, budget = row.next_offset, self.options.max_invoices
        while True:
            total, items = await self._page(offset)
            numbers = [str(item["id"]) for item in items if item.get("id")]
            async with self.database.reads.connect() as conn:
                known = await InvoiceRepository(conn).known_numbers(self.options.profile, numbers)
            adopted = skipped = failed = 0
            for item in items:
                number = str(item.get("id") or "")
                if not number or number in known:
                    continue
                if _created_before(item, self.options.since):
                    skipped += 1
                elif await self._adopt_one(number):
                    adopted += 1
                else:
                    failed += 1
            offset += len(items)
            finished = len(items) < self.options.page_size or (
                total is not None and offset >= total
            )
            async with self.database.engine.begin() as conn:
                row = await ImportRepository(conn).advance(
                    row.name,
                    next_offset=offset,
                    total=total,
                    adopted=adopted,
                    already_known=len(known),
                    skipped=skipped,
                    failed=failed,
                    finished=finished,
                )
            self._report(row)
            if finished:
                return row
            if budget is not None:
                budget -= adopted
                if budget <= 0:
                    self.progress(f"stopping after --max-invoices; resume at offset {offset}")
                    return row

    def _report(self, row: ImportRow) -> None:
        total = row.total
        share = f" of {total} ({min(100, round(100 * row.next_offset / total))} %)" if total else ""
        self.progress(
            f"offset {row.next_offset}{share}: {row.adopted} adopted, {row.already_known} already "
            f"known, {row.skipped} before --since, {row.failed} failed"
        )


async def run_import(
    settings: Settings, options: ImportOptions, progress: Callable[[str], None]
) -> ImportRow:
    database = Database.from_settings(settings)
    clients = CybersourceClients.from_settings(settings)
    try:
        return await Importer(database, settings, clients, options, progress).run()
    finally:
        await clients.aclose()
        await database.dispose()


def summary(row: ImportRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "merchantProfile": row.merchant_profile,
        "status": row.status_filter,
        "since": None if row.since is None else row.since.isoformat(),
        "owner": row.owner,
        "nextOffset": row.next_offset,
        "total": row.total,
        "adopted": row.adopted,
        "alreadyKnown": row.already_known,
        "skipped": row.skipped,
        "failed": row.failed,
        "finished": row.finished_at is not None,
    }
