"""InvoiceRepository on a real database: typed rows, number allocation, the list's filters and
keyset pages, and the sync_state rules of a delivered command."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from app.invoices.repository import (
    DeliveredState,
    InvoiceFilter,
    InvoiceRepository,
    InvoiceRow,
    InvoiceView,
)
from tests.packages import seed


async def _now(conn: AsyncConnection) -> datetime:
    return (await seed.sql(conn, "SELECT now()")).scalar_one()


# --- typed rows -----------------------------------------------------------------------------------


async def test_insert_then_get_returns_a_typed_row(conn: AsyncConnection) -> None:
    invoices = InvoiceRepository(conn)
    content = {
        "invoiceInformation": {"description": "Hours", "dueDate": "2026-12-31"},
        "orderInformation": {"lineItems": [{"quantity": 2, "unitPrice": "125.00"}]},
    }
    number = seed.number()
    invoice_id = await invoices.insert(
        merchant_profile="default",
        invoice_number=number,
        owner="billing",
        fields=seed.fields(total="1234.5600", content=content),
    )
    assert isinstance(invoice_id, int)

    row = await invoices.get("default", number)
    assert isinstance(row, InvoiceRow)
    assert row.id == invoice_id
    assert (row.merchant_profile, row.invoice_number, row.owner) == ("default", number, "billing")
    assert row.status is None  # until Cybersource has created it
    assert row.sync_state == "pending"
    assert row.last_error is None and row.upstream is None and row.balance_amount is None
    assert isinstance(row.content, dict) and row.content == content
    assert row.currency == "USD"
    for stamp in (row.created_at, row.updated_at, row.checked_at):
        assert isinstance(stamp, datetime) and stamp.tzinfo is not None
    total = await seed.column(conn, "invoices", "total_amount", invoice_id)
    assert isinstance(total, Decimal) and total == Decimal("1234.56")

    assert await invoices.get_by_id(invoice_id) == row
    assert await invoices.get("default", number, for_update=True) == row
    assert await invoices.get("eu", number) is None  # numbers belong to a merchant profile
    assert await invoices.get("default", seed.number()) is None
    assert await invoices.get_by_id(invoice_id + 1_000_000) is None


async def test_upstream_state_is_read_back_as_decimal_and_dict(conn: AsyncConnection) -> None:
    invoices = InvoiceRepository(conn)
    invoice_id = await seed.invoice(conn, checked_seconds_ago=600)
    upstream = {"status": "SENT", "invoiceHistory": [{"event": "SEND"}], "n": 12345678901}
    await invoices.apply_upstream_state(
        invoice_id,
        status="SENT",
        payment_link="https://pay.example/x",
        balance_amount=Decimal("99.9900"),
        upstream=upstream,
    )
    row = await invoices.get_by_id(invoice_id)
    assert row is not None
    assert row.status == "SENT" and row.payment_link == "https://pay.example/x"
    assert isinstance(row.balance_amount, Decimal) and row.balance_amount == Decimal("99.99")
    assert isinstance(row.upstream, dict) and row.upstream == upstream
    assert row.checked_at == await _now(conn)  # seen upstream just now

    # A reading without a field keeps what the store knew (COALESCE), and still counts as seen.
    await invoices.apply_upstream_state(
        invoice_id, status=None, payment_link=None, balance_amount=None, upstream=None
    )
    again = await invoices.get_by_id(invoice_id)
    assert again is not None
    assert (again.status, again.payment_link, again.balance_amount, again.upstream) == (
        "SENT",
        "https://pay.example/x",
        Decimal("99.99"),
        upstream,
    )


async def test_get_view_lists_the_unfinished_commands_in_queue_order(conn: AsyncConnection) -> None:
    number = seed.number()
    invoice_id = await seed.invoice(conn, number)
    done = await seed.operation(conn, invoice_id, "create", state="succeeded")
    first = await seed.operation(conn, invoice_id, "update", state="in_flight")
    failed = await seed.operation(conn, invoice_id, "publish", state="failed")
    second = await seed.operation(conn, invoice_id, "send")

    view = await InvoiceRepository(conn).get_view("default", number)
    assert isinstance(view, InvoiceView)
    assert view.pending_ids == [str(first), str(second)]
    assert str(done) not in view.pending_ids and str(failed) not in view.pending_ids
    assert view.id == invoice_id and isinstance(view.content, dict)
    assert await InvoiceRepository(conn).get_view("default", seed.number()) is None

    lonely = seed.number()
    await seed.invoice(conn, lonely)
    lonely_view = await InvoiceRepository(conn).get_view("default", lonely)
    assert lonely_view is not None and lonely_view.pending_ids == []


# --- numbers --------------------------------------------------------------------------------------


async def test_insert_returns_none_when_the_number_is_taken(conn: AsyncConnection) -> None:
    invoices = InvoiceRepository(conn)
    number = seed.number()
    first = await invoices.insert(
        merchant_profile="default", invoice_number=number, owner="billing", fields=seed.fields()
    )
    taken = await invoices.insert(
        merchant_profile="default",
        invoice_number=number,
        owner="shop",
        fields=seed.fields(total="5.00"),
    )
    assert first is not None and taken is None
    row = await invoices.get("default", number)
    assert row is not None and row.id == first and row.owner == "billing"  # the first one stays
    # The same number for another merchant profile is another invoice.
    other = await invoices.insert(
        merchant_profile="eu", invoice_number=number, owner="shop", fields=seed.fields()
    )
    assert other is not None and other != first


async def test_next_number_in_sequence_mode_counts_across_profiles(conn: AsyncConnection) -> None:
    invoices = InvoiceRepository(conn)
    first = await invoices.next_number("default", gapless=False)
    second = await invoices.next_number("default", gapless=False)
    third = await invoices.next_number("eu", gapless=False)
    assert isinstance(first, int) and first >= 1
    assert (second, third) == (first + 1, first + 2)
    # No counter row: the sequence never serialises concurrent creates.
    counters = await seed.sql(conn, "SELECT count(*) FROM invoice_number_counters")
    assert counters.scalar_one() == 0


async def test_next_number_in_gapless_mode_counts_per_profile(conn: AsyncConnection) -> None:
    invoices = InvoiceRepository(conn)
    assert [await invoices.next_number("default", gapless=True) for _ in range(3)] == [1, 2, 3]
    assert await invoices.next_number("eu", gapless=True) == 1
    assert await invoices.next_number("default", gapless=True) == 4
    counters = await seed.sql(
        conn,
        "SELECT merchant_profile, last_value FROM invoice_number_counters "
        "ORDER BY merchant_profile",
    )
    assert [tuple(r) for r in counters] == [("default", 4), ("eu", 1)]


# --- the list -------------------------------------------------------------------------------------


async def test_list_newest_applies_each_filter(conn: AsyncConnection) -> None:
    invoices = InvoiceRepository(conn)
    a = await seed.invoice(conn, owner="billing", status="SENT", age_seconds=400)
    b = await seed.invoice(conn, owner="billing", status="PAID", age_seconds=300, email="b@x.io")
    c = await seed.invoice(conn, owner="shop", status="SENT", age_seconds=200)
    d = await seed.invoice(conn, owner="billing", profile="eu", status="SENT", age_seconds=100)

    async def ids(**filters: object) -> list[int]:
        rows = await invoices.list_newest(InvoiceFilter(**filters), after=None, limit=50)
        return [row.id for row in rows]

    now = await _now(conn)
    assert await ids() == [d, c, b, a]  # newest first
    assert await ids(owner="billing") == [d, b, a]
    assert await ids(status="SENT") == [d, c, a]
    assert await ids(customer_email="b@x.io") == [b]
    assert await ids(merchant_profile="eu") == [d]
    assert await ids(owner="billing", status="SENT", merchant_profile="default") == [a]
    # created_from is inclusive, created_to exclusive.
    assert await ids(created_from=now - timedelta(seconds=300)) == [d, c, b]
    assert await ids(created_to=now - timedelta(seconds=300)) == [a]
    window = dict(
        created_from=now - timedelta(seconds=300), created_to=now - timedelta(seconds=100)
    )
    assert await ids(**window) == [c, b]
    assert await ids(owner="nobody") == []
    rows = await invoices.list_newest(InvoiceFilter(), after=None, limit=2)
    assert [row.id for row in rows] == [d, c] and all(isinstance(r, InvoiceRow) for r in rows)


async def test_list_newest_keyset_pages_neither_skip_nor_repeat_rows(conn: AsyncConnection) -> None:
    invoices = InvoiceRepository(conn)
    # Three invoices share one created_at: the id breaks the tie, also across a page boundary. The
    # ids are not in time order (rows are backdated), so the key must compare as a pair.
    ages = (10, 20, 50, 20, 5, 20)
    ids = [await seed.invoice(conn, age_seconds=age) for age in ages]
    expected = [i for _, i in sorted(zip(ages, ids, strict=True), key=lambda p: (p[0], -p[1]))]
    assert expected == [ids[4], ids[0], ids[5], ids[3], ids[1], ids[2]]

    everything = await invoices.list_newest(InvoiceFilter(), after=None, limit=50)
    assert [row.id for row in everything] == expected

    for limit in (1, 2, 3):
        seen: list[int] = []
        after: tuple[datetime, int] | None = None
        for _ in range(len(expected) + 1):  # bounded: a cursor that does not move fails, not hangs
            page = await invoices.list_newest(InvoiceFilter(), after=after, limit=limit)
            assert len(page) <= limit
            if not page:
                break
            seen.extend(row.id for row in page)
            after = (page[-1].created_at, page[-1].id)
        assert seen == expected, limit

    # Strictly after the cursor's row: the row itself is not on the next page.
    middle = everything[2]
    rest = await invoices.list_newest(
        InvoiceFilter(), after=(middle.created_at, middle.id), limit=50
    )
    assert [row.id for row in rest] == expected[3:]


# --- content and delivered commands ---------------------------------------------------------------


async def test_replace_content_and_mark_pending_set_the_invoice_pending(
    conn: AsyncConnection,
) -> None:
    invoices = InvoiceRepository(conn)
    invoice_id = await seed.invoice(conn, status="DRAFT", sync_state="in_sync")
    new = seed.fields(total="7.50", email="new@example.com", content={"replaced": True})
    await invoices.replace_content(invoice_id, new)
    row = await invoices.get_by_id(invoice_id)
    assert row is not None
    assert row.content == {"replaced": True} and row.sync_state == "pending"
    assert await seed.column(conn, "invoices", "total_amount", invoice_id) == Decimal("7.50")
    assert await seed.column(conn, "invoices", "customer_email", invoice_id) == "new@example.com"

    other = await seed.invoice(conn, status="SENT", sync_state="failed")
    await invoices.mark_pending(other)
    marked = await invoices.get_by_id(other)
    assert marked is not None and marked.sync_state == "pending" and marked.status == "SENT"


def _delivered(
    invoice_id: int, *, ok: bool, status: str | None = None, error: dict | None = None
) -> DeliveredState:
    return DeliveredState(
        invoice_id=invoice_id,
        succeeded=ok,
        status=status,
        payment_link="https://pay.example/p" if ok else None,
        balance_amount=Decimal("50.00") if ok else None,
        upstream={"status": status} if ok else None,
        error=error,
    )


async def test_apply_delivered_success_with_nothing_else_queued_is_in_sync(
    conn: AsyncConnection,
) -> None:
    invoices = InvoiceRepository(conn)
    invoice_id = await seed.invoice(conn, status="DRAFT", checked_seconds_ago=3600)
    await seed.sql(
        conn, "UPDATE invoices SET last_error = '{\"old\": 1}' WHERE id = :id", id=invoice_id
    )
    await seed.operation(conn, invoice_id, "send", state="succeeded")  # finished before recording

    await invoices.apply_delivered([_delivered(invoice_id, ok=True, status="SENT")])
    row = await invoices.get_by_id(invoice_id)
    assert row is not None
    assert row.sync_state == "in_sync"
    assert row.status == "SENT" and row.payment_link == "https://pay.example/p"
    assert row.balance_amount == Decimal("50.00") and row.upstream == {"status": "SENT"}
    assert row.last_error is None
    assert row.checked_at == await _now(conn)


async def test_apply_delivered_success_with_another_command_unfinished_stays_pending(
    conn: AsyncConnection,
) -> None:
    invoices = InvoiceRepository(conn)
    queued = await seed.invoice(conn, status="DRAFT")
    await seed.operation(conn, queued, "publish", state="succeeded")
    await seed.operation(conn, queued, "send")  # pending behind it
    in_flight = await seed.invoice(conn, status="DRAFT")
    await seed.operation(conn, in_flight, "publish", state="succeeded")
    await seed.operation(conn, in_flight, "send", state="in_flight")

    await invoices.apply_delivered(
        [
            _delivered(queued, ok=True, status="CREATED"),
            _delivered(in_flight, ok=True, status="CREATED"),
        ]
    )
    for invoice_id in (queued, in_flight):
        row = await invoices.get_by_id(invoice_id)
        assert row is not None and (row.sync_state, row.status) == ("pending", "CREATED")


async def test_apply_delivered_failure_is_failed_and_keeps_status(conn: AsyncConnection) -> None:
    invoices = InvoiceRepository(conn)
    invoice_id = await seed.invoice(conn, status="SENT", checked_seconds_ago=3600)
    await seed.operation(conn, invoice_id, "cancel", state="failed")
    before = await invoices.get_by_id(invoice_id)
    error = {"class": "rejected", "status": 400, "reason": "INVALID_DATA"}

    # A failed command names no status; even one would not be taken.
    await invoices.apply_delivered([_delivered(invoice_id, ok=False, status=None, error=error)])
    row = await invoices.get_by_id(invoice_id)
    assert row is not None and before is not None
    assert row.sync_state == "failed"
    assert row.status == "SENT"
    assert isinstance(row.last_error, dict) and row.last_error == error
    assert row.checked_at == before.checked_at  # nothing was seen upstream


async def test_apply_delivered_success_without_a_status_keeps_the_known_one(
    conn: AsyncConnection,
) -> None:
    invoices = InvoiceRepository(conn)
    invoice_id = await seed.invoice(conn, status="SENT")
    await invoices.apply_delivered([_delivered(invoice_id, ok=True, status=None)])
    row = await invoices.get_by_id(invoice_id)
    assert row is not None and (row.status, row.sync_state) == ("SENT", "in_sync")
    await invoices.apply_delivered([])  # an empty batch is no statement at all


async def test_apply_delivered_touches_only_the_invoices_in_the_batch(
    conn: AsyncConnection,
) -> None:
    invoices = InvoiceRepository(conn)
    target = await seed.invoice(conn, status="DRAFT")
    bystander = await seed.invoice(conn, status="DRAFT", sync_state="in_sync")
    await invoices.apply_delivered([_delivered(target, ok=False, error={"e": 1})])
    row = await invoices.get_by_id(bystander)
    assert row is not None and (row.sync_state, row.last_error) == ("in_sync", None)
