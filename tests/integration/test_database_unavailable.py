"""When the database refuses or cannot be reached, callers get 503 with Retry-After, never a 500."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from app.main import create_app
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.support.postgres import SERVER_URL
from tests.support.servers import free_port, serve


async def _answers(database_url: str, simulator_url: str) -> list[tuple[int, str, str | None]]:
    app = create_app(facade_settings(database_url, simulator_url, relay_in_process=False, relay_listen=False))
    with serve(app) as url:
        async with client_for(url) as api:
            responses = [await api.get("/v1/invoices"),
                         await api.post("/v1/invoices", json=invoice_body(), headers=key())]
    return [(r.status_code, r.json()["code"], r.headers.get("retry-after")) for r in responses]


async def test_out_of_connections_is_503(database_url: str, simulator_url: str):
    role = f"igw_limited_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{SERVER_URL}/postgres")
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")  # "too many connections for role"
        limited_url = database_url.replace("postgres@", f"{role}@", 1)
        assert await _answers(limited_url, simulator_url) == [(503, "service_unavailable", "2")] * 2
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_database_down_is_503(simulator_url: str):
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    assert await _answers(nowhere, simulator_url) == [(503, "service_unavailable", "2")] * 2


async def test_a_busy_pool_is_503_after_the_pool_timeout(database_url: str, simulator_url: str,
                                                          sim: httpx.AsyncClient):
    """A refresh holds its connection (and the invoice row) while Cybersource hangs; with a pool of one, a
    read waits `DATABASE_POOL_TIMEOUT_SECONDS` for a connection, then answers 503 instead of waiting on."""
    settings = facade_settings(database_url, simulator_url, database_pool_size=1, database_pool_timeout_seconds=0.5)
    with serve(create_app(settings)) as url:
        async with client_for(url) as api:
            created = await api.post("/v1/invoices", json=invoice_body(), headers=key())
            assert created.status_code == 201, created.text
            number = created.json()["invoiceNumber"]
            await sim.post("/__sim/faults", json={"action": "hang", "method": "GET", "times": 1,
                                                  "path": f"/invoicing/v2/invoices/{number}"})
            refresh = asyncio.create_task(api.get(f"/v1/invoices/{number}", params={"refresh": "true"}))
            await asyncio.sleep(0.3)
            waited = await api.get("/v1/invoices")
            assert (waited.status_code, waited.json()["code"]) == (503, "service_unavailable")
            assert waited.headers["retry-after"]
            await refresh
            assert (await api.get("/v1/invoices")).status_code == 200  # the connection came back
