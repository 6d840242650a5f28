"""Issue 15: LISTEN comes back after its connection was lost (a database restart, a killed backend),
and /readyz says so while it is away.

The session's PostgreSQL is shared, so the restart is played on a database of our own: its LISTEN
backends are terminated while new connections to it are refused, then allowed again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from app.main import create_app
from tests.integration.conftest import client_for, facade_settings, key
from tests.integration.test_outbox_relay import tagged_body
from tests.integration.waiting import until
from tests.support.postgres import SERVER_URL, fresh_database
from tests.support.servers import serve


async def admin(sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(f"{SERVER_URL}/postgres")
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def listening_backends(database: str) -> list[int]:
    rows = await admin(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 "
        "AND application_name LIKE 'igw-listen:%'",
        database,
    )
    return [row["pid"] for row in rows]


@pytest.fixture
async def facade(simulator_url: str) -> AsyncIterator[tuple[str, str]]:
    """(base URL, database name) of a facade with its relay in process: two LISTEN connections."""
    with (
        fresh_database() as url,
        serve(create_app(facade_settings(url, simulator_url))) as base_url,
    ):
        yield base_url, url.rsplit("/", 1)[1]


async def test_listen_reconnects_after_its_backends_are_killed_and_readyz_tells(
    facade: tuple[str, str],
):
    base_url, database = facade
    async with httpx.AsyncClient(base_url=base_url) as probe, client_for(base_url) as api:
        listeners = (await probe.get("/readyz")).json()["listen"]
        # The API's operation waiter and the relay (and any other relay the process runs).
        assert {"operations", "outbox"} <= set(listeners)
        assert set(listeners.values()) == {"listening"}
        assert len(await listening_backends(database)) == len(listeners)
        await admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            for pid in await listening_backends(database):
                await admin("SELECT pg_terminate_backend($1)", pid)

            async def not_ready() -> dict[str, object] | None:
                answer = await probe.get("/readyz")
                body: dict[str, object] = answer.json()
                listen = body.get("listen")
                lost = listen == dict.fromkeys(listeners, "reconnecting")
                return body if answer.status_code == 503 and lost else None

            assert (await until(not_ready, what="/readyz to report LISTEN away"))["status"] == (
                "unavailable"
            )
        finally:
            await admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

        async def ready() -> bool:
            answer = await probe.get("/readyz")
            return answer.status_code == 200 and answer.json()["listen"] == listeners

        await until(ready, timeout=30, what="LISTEN to come back")
        assert len(await listening_backends(database)) == len(listeners)
        # And it works: a create is delivered and answered as before.
        created = await api.post("/v1/invoices", json=tagged_body(uuid.uuid4().hex), headers=key())
        assert created.status_code == 201, created.text


async def test_first_requests_after_every_connection_was_lost_are_answered(
    facade: tuple[str, str],
):
    """A restart kills every connection, pooled ones too. Unless the pool retires its connections
    when LISTEN is lost, the first request on a dead pooled connection answers 503 once the
    database is back."""
    base_url, database = facade
    async with client_for(base_url) as api:
        created = await api.post("/v1/invoices", json=tagged_body(uuid.uuid4().hex), headers=key())
        assert created.status_code == 201, created.text
        number = created.json()["invoiceNumber"]
        # Several reads at once leave several idle connections in the pool.
        warm = [api.get(f"/v1/invoices/{number}") for _ in range(8)]
        assert {r.status_code for r in await asyncio.gather(*warm)} == {200}
        listeners = await listening_backends(database)
        pooled = await admin(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        assert len(pooled) > len(listeners)
        for row in pooled:  # what a restart does to every connection
            await admin("SELECT pg_terminate_backend($1)", row["pid"])

        async def listening_again() -> bool:
            # Watched from the server's side: a /readyz probe would itself meet (and retire) a
            # dead pooled connection.
            return len(await listening_backends(database)) == len(listeners)

        await until(listening_again, timeout=30, what="LISTEN to come back")
        answers = [await api.get(f"/v1/invoices/{number}") for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        again = await api.post("/v1/invoices", json=tagged_body(uuid.uuid4().hex), headers=key())
        assert again.status_code == 201, again.text
