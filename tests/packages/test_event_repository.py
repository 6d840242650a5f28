"""EventRepository on a real database: a batch copies its invoice's columns; the feed is in commit
order, filtered by owner, and never moves past a transaction that is still running.

The feed shows only what committed below every running transaction, and the test's own transaction
is running: events it writes are moved to an older txid (`_as_committed`) before the feed is read.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.events.repository import EventRepository, EventRow, NewEvent
from app.events.types import EventType
from tests.packages import seed

_OWN_TXID = "pg_current_xact_id()::text::bigint"


async def _as_committed(conn: AsyncConnection, txid: int) -> None:
    """Make the events this transaction wrote look as if transaction `txid` had committed them."""
    await seed.sql(conn, f"UPDATE events SET txid = :t WHERE txid = {_OWN_TXID}", t=txid)


async def _event_at(conn: AsyncConnection, invoice_id: int, txid: int) -> int:
    """An event as written by transaction `txid`."""
    found = await seed.sql(
        conn,
        "INSERT INTO events "
        "(txid, type, invoice_id, invoice_number, merchant_profile, owner, data) "
        "SELECT :txid, 'invoice.sent', id, invoice_number, merchant_profile, owner, '{}'::jsonb "
        "FROM invoices WHERE id = :invoice RETURNING id",
        txid=txid,
        invoice=invoice_id,
    )
    return int(found.scalar_one())


async def test_insert_copies_number_profile_and_owner_from_each_invoice(
    conn: AsyncConnection,
) -> None:
    events = EventRepository(conn)
    first_number, second_number = seed.number(), seed.number()
    first = await seed.invoice(conn, first_number, owner="billing")
    second = await seed.invoice(conn, second_number, owner="shop", profile="eu")
    operation_id = uuid.uuid4()
    await events.insert(
        [
            NewEvent(EventType.CREATED, first, operation_id, {"status": "DRAFT", "n": [1, 2]}),
            NewEvent(EventType.PAID, second, None, {"balanceAmount": "0.00"}),
            NewEvent(EventType.SENT, first, None, {}),
        ]
    )
    await events.insert([])  # no statement for an empty batch

    own_txid = (await seed.sql(conn, f"SELECT {_OWN_TXID}")).scalar_one()
    written = (await seed.sql(conn, "SELECT txid FROM events")).scalars().all()
    assert written == [own_txid] * 3  # stamped with the writing transaction

    await _as_committed(conn, 100)
    rows = await events.list_after(after=None, owner=None, limit=50)
    assert all(isinstance(row, EventRow) for row in rows)
    assert [
        (row.type, row.invoice_number, row.merchant_profile, row.owner, row.operation_id)
        for row in rows
    ] == [
        ("invoice.created", first_number, "default", "billing", operation_id),
        ("invoice.paid", second_number, "eu", "shop", None),
        ("invoice.sent", first_number, "default", "billing", None),
    ]
    assert isinstance(rows[0].operation_id, uuid.UUID)
    assert rows[0].data == {"status": "DRAFT", "n": [1, 2]} and isinstance(rows[1].data, dict)
    for row in rows:
        assert isinstance(row.created_at, datetime) and row.created_at.tzinfo is not None
    assert [row.id for row in rows] == sorted(row.id for row in rows)


async def test_list_after_orders_by_transaction_then_id_and_pages_strictly_after(
    conn: AsyncConnection,
) -> None:
    invoice_id = await seed.invoice(conn)
    # Ids are handed out in the order the rows were written; commit order is the txid's.
    late = await _event_at(conn, invoice_id, txid=30)
    early = await _event_at(conn, invoice_id, txid=10)
    middle_a = await _event_at(conn, invoice_id, txid=20)
    middle_b = await _event_at(conn, invoice_id, txid=20)
    events = EventRepository(conn)

    everything = await events.list_after(after=None, owner=None, limit=50)
    assert [row.id for row in everything] == [early, middle_a, middle_b, late]

    paged: list[int] = []
    after = None
    for _ in range(4):  # bounded: a position that does not move fails, not hangs
        page = await events.list_after(after=after, owner=None, limit=2)
        if not page:
            break
        paged.extend(row.id for row in page)
        after = (page[-1].txid, page[-1].id)
    assert paged == [early, middle_a, middle_b, late]

    rest = await events.list_after(after=(20, middle_a), owner=None, limit=50)
    assert [row.id for row in rest] == [middle_b, late]
    assert await events.list_after(after=(30, late), owner=None, limit=50) == []


async def test_list_after_filters_by_owner(conn: AsyncConnection) -> None:
    events = EventRepository(conn)
    billing = await seed.invoice(conn, owner="billing")
    shop = await seed.invoice(conn, owner="shop")
    await events.insert(
        [
            NewEvent(EventType.CREATED, billing, None, {}),
            NewEvent(EventType.CREATED, shop, None, {}),
            NewEvent(EventType.SENT, billing, None, {}),
        ]
    )
    await _as_committed(conn, 100)
    mine = await events.list_after(after=None, owner="billing", limit=50)
    assert [(row.owner, row.type) for row in mine] == [
        ("billing", "invoice.created"),
        ("billing", "invoice.sent"),
    ]
    theirs = await events.list_after(after=None, owner="shop", limit=50)
    assert [row.owner for row in theirs] == ["shop"]
    assert await events.list_after(after=None, owner="nobody", limit=50) == []
    assert len(await events.list_after(after=None, owner=None, limit=50)) == 3


async def test_the_feed_waits_for_an_older_transaction_still_running(
    engine: AsyncEngine, conn: AsyncConnection
) -> None:
    events = EventRepository(conn)
    invoice_id = await seed.invoice(conn)
    async with engine.connect() as other:
        await other.begin()
        # A transaction of this database that is still running: what it writes commits with its
        # txid, so the feed must hand out nothing at or above it until it ends ...
        running = (await other.execute(text(f"SELECT {_OWN_TXID}"))).scalar_one()
        # ... even once a later transaction has committed (which moves the snapshot's horizon past
        # it).
        async with engine.begin() as later:
            assert (await later.execute(text(f"SELECT {_OWN_TXID}"))).scalar_one() > running
        before = await _event_at(conn, invoice_id, txid=running - 1)
        its_own = await _event_at(conn, invoice_id, txid=running)

        held = await events.list_after(after=None, owner=None, limit=50)
        assert [row.id for row in held] == [before]

        await other.rollback()
    released = await events.list_after(after=None, owner=None, limit=50)
    assert [row.id for row in released] == [before, its_own]
