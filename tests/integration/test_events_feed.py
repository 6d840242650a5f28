"""The events feed pages in commit order and never skips a row that commits late."""

from __future__ import annotations

import asyncpg
import httpx

from tests.integration.conftest import invoice_body, key
from tests.support.postgres import SERVER_URL


async def _feed(api: httpx.AsyncClient, after: str | None) -> tuple[list[dict], str | None]:
    params = {"limit": 500, **({"after": after} if after else {})}
    body = (await api.get("/v1/events", params=params)).json()
    return body["items"], body["nextCursor"]


async def _insert_event(conn: asyncpg.Connection, invoice_id: int, marker: str) -> None:
    await conn.execute(
        "INSERT INTO events (type, invoice_id, invoice_number, merchant_profile, owner, data) "
        "SELECT 'invoice.updated', id, invoice_number, merchant_profile, owner, "
        "jsonb_build_object('marker', $2::text) "
        "FROM invoices WHERE id = $1",
        invoice_id,
        marker,
    )


async def test_late_commit_is_not_skipped_and_other_databases_do_not_block(api, database_url):
    number = (await api.post("/v1/invoices", json=invoice_body(), headers=key())).json()[
        "invoiceNumber"
    ]
    _, cursor = await _feed(api, None)
    while True:  # drain to the end of the feed
        items, next_cursor = await _feed(api, cursor)
        if not items:
            break
        cursor = next_cursor

    early = await asyncpg.connect(database_url)
    late = await asyncpg.connect(database_url)
    elsewhere = await asyncpg.connect(f"{SERVER_URL}/postgres")
    try:
        invoice_id = await early.fetchval(
            "SELECT id FROM invoices WHERE invoice_number = $1", number
        )
        # A transaction in another database that holds an xid must not hold our feed back.
        other = elsewhere.transaction()
        await other.start()
        await elsewhere.execute(
            "CREATE TEMP TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1)"
        )

        first = early.transaction()
        await first.start()
        await _insert_event(
            early, invoice_id, "first"
        )  # takes the smaller transaction id, commits last
        await _insert_event(late, invoice_id, "second")  # autocommits at once

        items, held_cursor = await _feed(api, cursor)
        assert [i["data"].get("marker") for i in items] == [], (
            "a row past a running transaction was shown"
        )
        assert held_cursor == cursor

        await first.commit()
        items, cursor = await _feed(api, cursor)
        assert [i["data"]["marker"] for i in items] == ["first", "second"]
        await other.rollback()
    finally:
        await early.close()
        await late.close()
        await elsewhere.close()
