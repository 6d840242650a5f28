"""The status reconciler: keep the store right when a Cybersource webhook never arrives.

Payers change invoices without any command of ours (a payment moves SENT to PARTIAL or PAID), and
the store learns of it from Cybersource's webhook. Webhooks get lost (a subscription misconfigured,
retries exhausted during an outage), so the relay also re-reads open invoices (CREATED, SENT,
PARTIAL, PENDING) not seen upstream for `RECONCILE_AFTER_SECONDS`, a bounded batch at a time with
few calls in flight, so the delivery of commands keeps the upstream capacity. A change is recorded
as a refresh or a webhook records it: the new status, balance and body, and the lifecycle event
(`invoice.paid`, ...).
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from app.cybersource.client import CybersourceClients, UnknownMerchantProfileError
from app.cybersource.errors import CybersourceError
from app.invoices.repository import InvoiceRepository
from app.invoices.upstream_state import UpstreamState
from app.observability.logging import get_logger
from app.observability.metrics import RECONCILER_CHECKS
from app.settings import Settings
from app.upstream_sync.repository import DueInvoice, UpstreamSyncRepository
from app.upstream_sync.service import record_upstream_state

log = get_logger(__name__)
# The longest pause between two looks for due invoices, whatever the staleness setting.
MAX_IDLE_SECONDS = 60.0


class StatusReconciler:
    def __init__(
        self, engine: AsyncEngine, settings: Settings, clients: CybersourceClients
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clients = clients

    @property
    def enabled(self) -> bool:
        return self.settings.reconcile_after_seconds > 0

    @property
    def idle_seconds(self) -> float:
        return min(MAX_IDLE_SECONDS, self.settings.reconcile_after_seconds / 4)

    async def step(self) -> bool:
        """One batch; True when it was full, so more may be due right away."""
        return await self.reconcile_due() >= self.settings.reconcile_batch_size

    async def reconcile_due(self) -> int:
        """Re-read one batch of due invoices; returns how many were due."""
        async with self.engine.begin() as conn:
            due = await UpstreamSyncRepository(conn).claim_invoices_to_reconcile(
                stale_seconds=self.settings.reconcile_after_seconds,
                limit=self.settings.reconcile_batch_size,
            )
        slots = asyncio.Semaphore(self.settings.reconcile_concurrency)

        async def check(invoice: DueInvoice) -> None:
            async with slots:
                RECONCILER_CHECKS.labels(await self.check(invoice)).inc()

        await asyncio.gather(*(check(invoice) for invoice in due))
        return len(due)

    async def check(self, due: DueInvoice) -> str:
        """Re-read one claimed invoice and record a change; returns the outcome (a metrics
        label)."""
        number = due.invoice_number
        try:
            result = await self.clients.get(due.merchant_profile).get_invoice(number)
        except UnknownMerchantProfileError:
            log.warning(
                "reconciler.unknown_profile", invoice_number=number, profile=due.merchant_profile
            )
            return "failed"
        except CybersourceError as exc:  # looked at again after the interval
            log.warning(
                "reconciler.read_failed",
                invoice_number=number,
                status=exc.status,
                error=exc.message,
                correlation_id=exc.correlation_id,
            )
            return "failed"
        state = UpstreamState.from_body(result.raw)
        async with self.engine.begin() as conn:
            invoice = await InvoiceRepository(conn).get_by_id(due.id, for_update=True)
            # Seen since the claim (a command's answer, a webhook, a refresh), or a command on its
            # way: what we read may already be older than what the store has.
            if (
                invoice is None
                or invoice.checked_at != due.checked_at
                or invoice.sync_state == "pending"
            ):
                return "superseded"
            unchanged_status = state.status in (None, invoice.status)
            if unchanged_status and state.balance_amount in (None, invoice.balance_amount):
                return "unchanged"
            await record_upstream_state(conn, invoice, state)
        log.info(
            "reconciler.status_changed",
            invoice_number=number,
            previous_status=invoice.status,
            status=state.status,
        )
        return "changed"
