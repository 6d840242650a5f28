"""The facade and its relay work behind PgBouncer in transaction mode (no LISTEN: polling alone)."""

from __future__ import annotations

import asyncio

from app.main import create_app
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.support.pgbouncer import pgbouncer
from tests.support.postgres import fresh_database
from tests.support.servers import serve


async def test_create_send_and_read_through_pgbouncer(simulator_url: str):
    with fresh_database() as direct_url:
        database = direct_url.rsplit("/", 1)[1]
        with pgbouncer(database) as bouncer_url:
            settings = facade_settings(
                bouncer_url,
                simulator_url,
                database_pgbouncer=True,
                relay_listen=False,
                relay_poll_interval_seconds=0.1,
            )
            with serve(create_app(settings)) as url:
                async with client_for(url) as api:
                    for _ in range(5):  # several transactions, so server connections get reused
                        created = await api.post("/v1/invoices", json=invoice_body(), headers=key())
                        assert created.status_code == 201, created.text
                        number = created.json()["invoiceNumber"]
                        sent = await api.post(f"/v1/invoices/{number}/send", headers=key())
                        assert sent.status_code == 200, sent.text
                        assert sent.json()["status"] == "SENT"
                    listed = await api.get("/v1/invoices", params={"status": "SENT"})
                    assert len(listed.json()["items"]) == 5


async def test_concurrent_reads_and_replays_through_pgbouncer(simulator_url: str):
    """Reads and idempotency checks in parallel: each statement must stay on the server connection
    it was prepared on, which transaction mode only guarantees inside a transaction."""
    with fresh_database() as direct_url:
        database = direct_url.rsplit("/", 1)[1]
        with pgbouncer(database) as bouncer_url:
            settings = facade_settings(
                bouncer_url,
                simulator_url,
                database_pgbouncer=True,
                relay_listen=False,
                relay_poll_interval_seconds=0.05,
            )
            with serve(create_app(settings)) as url:
                async with client_for(url) as api:
                    headers, body = key(), invoice_body()
                    created = await api.post("/v1/invoices", json=body, headers=headers)
                    assert created.status_code == 201, created.text
                    number = created.json()["invoiceNumber"]

                    async def read(i: int) -> int:
                        if i % 3 == 0:
                            answer = await api.get(f"/v1/invoices/{number}")
                        elif i % 3 == 1:
                            answer = await api.get("/v1/invoices")
                        else:
                            answer = await api.post("/v1/invoices", json=body, headers=headers)
                        return answer.status_code

                    statuses = await asyncio.gather(*(read(i) for i in range(300)))
                    assert set(statuses) <= {200, 201}, sorted(set(statuses))
