"""UpstreamSyncRepository on a real database (webhook receipts, the reconciler's queue) and the
recording of what Cybersource reports outside our own commands
(upstream_sync.service.record_upstream_state)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from app.events.types import EventType
from app.invoices.commands import RECONCILED_STATUSES, InvoiceStatus
from app.invoices.repository import InvoiceRepository
from app.invoices.upstream_state import UpstreamState
from app.upstream_sync.repository import DueInvoice, UpstreamSyncRepository
from app.upstream_sync.service import record_upstream_state
from tests.packages import seed

STALE = 3600.0
OPEN = [status.value for status in RECONCILED_STATUSES]
CLOSED = [status.value for status in InvoiceStatus if status not in RECONCILED_STATUSES]


async def _receipt(repo: UpstreamSyncRepository, key: str, event_type: str) -> bool:
    return await repo.record_webhook_receipt(
        dedup_key=key, event_type=event_type, invoice_number="INV-1", merchant_profile="default"
    )


async def test_a_webhook_receipt_is_recorded_once(conn: AsyncConnection) -> None:
    repo = UpstreamSyncRepository(conn)
    key = f"dedup-{uuid.uuid4()}"
    assert await repo.webhook_receipt_exists(key) is False
    assert await _receipt(repo, key, "invoicing.customer.invoice.paid") is True
    assert await repo.webhook_receipt_exists(key) is True
    assert await _receipt(repo, key, "invoicing.customer.invoice.send") is False  # a redelivery
    stored = await seed.sql(
        conn, "SELECT event_type FROM webhook_receipts WHERE dedup_key = :k", k=key
    )
    assert stored.scalars().all() == ["invoicing.customer.invoice.paid"]  # the first one stays
    assert await repo.webhook_receipt_exists(f"dedup-{uuid.uuid4()}") is False


async def test_the_reconciler_claims_only_stale_open_invoices_with_no_command_on_its_way(
    conn: AsyncConnection,
) -> None:
    repo = UpstreamSyncRepository(conn)
    due = {
        await seed.invoice(conn, status=status, sync_state=sync, checked_seconds_ago=2 * STALE)
        for status in OPEN
        for sync in ("in_sync", "failed")
    }
    not_due = [
        # a payer can no longer move these (or Cybersource does not have it yet)
        *[
            await seed.invoice(
                conn, status=status, sync_state="in_sync", checked_seconds_ago=2 * STALE
            )
            for status in [*CLOSED, None]
        ],
        # a command of ours is on its way: its answer will tell
        *[
            await seed.invoice(
                conn, status=status, sync_state="pending", checked_seconds_ago=2 * STALE
            )
            for status in OPEN
        ],
        # seen upstream recently
        *[
            await seed.invoice(
                conn, status=status, sync_state="in_sync", checked_seconds_ago=STALE / 2
            )
            for status in OPEN
        ],
    ]

    claimed = await repo.claim_invoices_to_reconcile(stale_seconds=STALE, limit=100)
    assert {row.id for row in claimed} == due
    now = (await seed.sql(conn, "SELECT now()")).scalar_one()
    for row in claimed:
        assert isinstance(row, DueInvoice)
        assert isinstance(row.checked_at, datetime) and row.checked_at == now  # the claim
        assert row.merchant_profile == "default" and row.invoice_number.startswith("PKG-")
    for invoice_id in not_due:
        checked = await seed.column(conn, "invoices", "checked_at", invoice_id)
        assert checked < now  # untouched

    # Claimed means seen just now: the next pass finds nothing due.
    assert await repo.claim_invoices_to_reconcile(stale_seconds=STALE, limit=100) == []


async def test_the_reconciler_claims_the_longest_unseen_first_up_to_its_limit(
    conn: AsyncConnection,
) -> None:
    repo = UpstreamSyncRepository(conn)
    ages = (2, 5, 3, 4)
    ids = [
        await seed.invoice(conn, status="SENT", sync_state="in_sync", checked_seconds_ago=a * STALE)
        for a in ages
    ]
    first = await repo.claim_invoices_to_reconcile(stale_seconds=STALE, limit=2)
    assert {row.id for row in first} == {ids[1], ids[3]}  # unseen for 5 and 4 hours
    second = await repo.claim_invoices_to_reconcile(stale_seconds=STALE, limit=2)
    assert {row.id for row in second} == {ids[2], ids[0]}


# --- record_upstream_state: what a refresh, a webhook or the reconciler saw -----------------------


async def _events(conn: AsyncConnection, invoice_id: int) -> list[tuple[str, dict]]:
    found = await seed.sql(
        conn, "SELECT type, data FROM events WHERE invoice_id = :id ORDER BY id", id=invoice_id
    )
    return [(row.type, row.data) for row in found]


def _upstream(status: str, balance: str) -> UpstreamState:
    return UpstreamState.from_body(
        {
            "status": status,
            "invoiceInformation": {"paymentLink": "https://pay.example/i"},
            "orderInformation": {
                "amountDetails": {"totalAmount": "100.00", "balanceAmount": balance}
            },
        }
    )


async def test_a_payment_seen_upstream_is_stored_with_its_event(conn: AsyncConnection) -> None:
    invoices = InvoiceRepository(conn)
    invoice_id = await seed.invoice(conn, status="SENT", sync_state="in_sync")
    before = await invoices.get_by_id(invoice_id)
    assert before is not None

    await record_upstream_state(conn, before, _upstream("PAID", "0.00"))
    after = await invoices.get_by_id(invoice_id)
    assert after is not None
    assert (after.status, after.balance_amount) == ("PAID", Decimal("0.00"))
    assert after.payment_link == "https://pay.example/i" and after.upstream is not None
    [(event_type, data)] = await _events(conn, invoice_id)
    assert event_type == EventType.PAID
    assert (data["status"], data["previousStatus"], data["balanceAmount"]) == (
        "PAID",
        "SENT",
        "0.00",
    )

    # The same status again is no new event.
    await record_upstream_state(conn, after, _upstream("PAID", "0.00"))
    assert len(await _events(conn, invoice_id)) == 1


async def test_our_own_queued_command_writes_its_event_not_the_observation(
    conn: AsyncConnection,
) -> None:
    invoices = InvoiceRepository(conn)
    ours = await seed.invoice(conn, status="SENT", sync_state="pending")
    await seed.operation(conn, ours, "cancel", state="in_flight")
    not_ours = await seed.invoice(conn, status="SENT", sync_state="in_sync")

    for invoice_id in (ours, not_ours):
        row = await invoices.get_by_id(invoice_id)
        assert row is not None
        await record_upstream_state(conn, row, _upstream("CANCELED", "100.00"))
        stored = await invoices.get_by_id(invoice_id)
        assert stored is not None and stored.status == "CANCELED"
    assert await _events(conn, ours) == []  # the relay writes invoice.canceled with the command
    assert [event_type for event_type, _ in await _events(conn, not_ours)] == [EventType.CANCELED]
