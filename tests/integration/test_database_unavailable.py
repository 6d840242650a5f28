"""When the database refuses or cannot be reached, callers get 503 with Retry-After, never a 500."""

from __future__ import annotations

import asyncio
import uuid
from contextvars import ContextVar
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncTransaction

from app.idempotency.repository import IdempotencyRepository
from app.main import create_app
from app.outbox.repository import OutboxRepository
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.integration.waiting import add_fault, fault_hits, until, waiting_for_a_lock
from tests.support.postgres import SERVER_URL
from tests.support.servers import free_port, serve


async def _answers(database_url: str, simulator_url: str) -> list[tuple[int, str, str | None]]:
    app = create_app(
        facade_settings(database_url, simulator_url, relay_in_process=False, relay_listen=False)
    )
    with serve(app) as url:
        async with client_for(url) as api:
            responses = [
                await api.get("/v1/invoices"),
                await api.post("/v1/invoices", json=invoice_body(), headers=key()),
            ]
    return [(r.status_code, r.json()["code"], r.headers.get("retry-after")) for r in responses]


async def test_out_of_connections_is_503(database_url: str, simulator_url: str):
    role = f"igw_limited_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{SERVER_URL}/postgres")
    try:
        await admin.execute(
            f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"
        )  # "too many connections for role"
        limited_url = database_url.replace("postgres@", f"{role}@", 1)
        assert await _answers(limited_url, simulator_url) == [(503, "service_unavailable", "2")] * 2
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_database_down_is_503(simulator_url: str):
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    assert await _answers(nowhere, simulator_url) == [(503, "service_unavailable", "2")] * 2


async def test_a_database_that_refuses_connections_is_503(database_url: str, simulator_url: str):
    """`ALLOW_CONNECTIONS false` (an operator's hand, or a database being moved) refuses at connect
    time with an error that is no connection error class ("not currently accepting connections");
    it answered 500."""
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(f"{SERVER_URL}/postgres")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        answers = await _answers(database_url, simulator_url)
        assert answers == [(503, "service_unavailable", "2")] * 2
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_a_busy_pool_is_503_after_the_pool_timeout(database_url: str, simulator_url: str):
    """With a pool of one, held by a send that waits for the invoice's row lock (taken here), a read
    waits `DATABASE_POOL_TIMEOUT_SECONDS` for a connection, then answers 503 instead of waiting
    on."""
    settings = facade_settings(
        database_url, simulator_url, database_pool_size=1, database_pool_timeout_seconds=0.5
    )
    with serve(create_app(settings)) as url:
        async with client_for(url) as api:
            created = await api.post("/v1/invoices", json=invoice_body(), headers=key())
            assert created.status_code == 201, created.text
            number = created.json()["invoiceNumber"]
            locker = await asyncpg.connect(database_url)
            try:
                async with locker.transaction():
                    await locker.execute(
                        "SELECT 1 FROM invoices WHERE invoice_number = $1 FOR UPDATE", number
                    )
                    send = asyncio.create_task(
                        api.post(f"/v1/invoices/{number}/send", headers=key())
                    )
                    # The send holds the pool's one connection, waiting for the lock.
                    await until(
                        lambda: waiting_for_a_lock(database_url),
                        what="the send to wait for the row lock",
                    )
                    waited = await api.get("/v1/invoices")
                    assert (waited.status_code, waited.json()["code"]) == (
                        503,
                        "service_unavailable",
                    )
                    assert waited.headers["retry-after"]
            finally:
                await locker.close()
            assert (await send).status_code == 200  # the lock is gone: the send went through
            assert (await api.get("/v1/invoices")).status_code == 200


async def test_a_refresh_holds_no_connection_while_cybersource_answers(
    database_url: str, simulator_url: str, sim: httpx.AsyncClient
):
    """With a pool of one, reads go on while a refresh waits for a hanging Cybersource."""
    settings = facade_settings(
        database_url, simulator_url, database_pool_size=1, database_pool_timeout_seconds=0.5
    )
    with serve(create_app(settings)) as url:
        async with client_for(url) as api:
            created = await api.post("/v1/invoices", json=invoice_body(), headers=key())
            assert created.status_code == 201, created.text
            number = created.json()["invoiceNumber"]
            hang = await add_fault(
                sim, action="hang", method="GET", times=1, path=f"/invoicing/v2/invoices/{number}"
            )
            refresh = asyncio.create_task(
                api.get(f"/v1/invoices/{number}", params={"refresh": "true"})
            )
            await until(
                lambda: fault_hits(sim, hang), what="the refresh to reach the hanging Cybersource"
            )
            assert not refresh.done()
            assert (await api.get("/v1/invoices")).status_code == 200
            assert (await api.get(f"/v1/invoices/{number}")).status_code == 200
            timed_out = await refresh  # the client's read timeout: 502, nothing recorded
            assert (timed_out.status_code, timed_out.json()["code"]) == (
                502,
                "upstream_unavailable",
            )


async def test_an_outage_after_commit_says_the_request_was_accepted(
    database_url: str, simulator_url: str, monkeypatch: pytest.MonkeyPatch
):
    """The create is committed; reading its outcome then fails (the database went away). The
    503 must not claim "nothing was applied": it names the accepted operation, and the same key gets
    the answer."""
    outage = {"armed": True}
    original = OutboxRepository.get

    async def away_once(self: OutboxRepository, operation_id: uuid.UUID) -> Any:
        if outage["armed"]:
            outage["armed"] = False
            raise ConnectionRefusedError("the database is restarting")
        return await original(self, operation_id)

    monkeypatch.setattr(OutboxRepository, "get", away_once)
    with serve(create_app(facade_settings(database_url, simulator_url))) as url:
        async with client_for(url) as api:
            create_key = key()
            body = invoice_body()
            answer = await api.post("/v1/invoices", json=body, headers=create_key)
            assert not outage["armed"]
            assert (answer.status_code, answer.json()["code"]) == (503, "service_unavailable")
            problem = answer.json()
            assert "nothing was applied" not in problem["detail"]
            assert "accepted" in problem["detail"] and problem["operationId"]
            assert answer.headers["location"] == f"/v1/operations/{problem['operationId']}"
            retried = await api.post("/v1/invoices", json=body, headers=create_key)
            assert retried.status_code == 201, retried.text
            assert retried.headers["idempotent-replayed"] == "true"
            operation = await api.get(f"/v1/operations/{problem['operationId']}")
            assert operation.json()["invoiceNumber"] == retried.json()["invoiceNumber"]


async def test_a_connection_lost_while_committing_says_it_may_have_been_applied(
    database_url: str, simulator_url: str, monkeypatch: pytest.MonkeyPatch
):
    """The create's transaction commits, and the connection is lost before the confirmation arrives
    (the database was killed at that moment): the 503 must not say "nothing was applied"."""
    lost_after_commit: ContextVar[bool] = ContextVar("lost_after_commit", default=False)
    first = {"request": True}
    attach = IdempotencyRepository.attach_operation

    async def attach_then_arm(self: IdempotencyRepository, *args: Any) -> None:
        await attach(self, *args)
        if first["request"]:
            first["request"] = False
            lost_after_commit.set(True)  # this request's transaction, and no other

    leave = AsyncTransaction.__aexit__

    async def commit_then_lose(self: AsyncTransaction, *exc_info: Any) -> Any:
        result = await leave(self, *exc_info)
        if exc_info[0] is None and lost_after_commit.get():
            lost_after_commit.set(False)
            raise ConnectionResetError("connection lost after COMMIT was sent")
        return result

    monkeypatch.setattr(IdempotencyRepository, "attach_operation", attach_then_arm)
    monkeypatch.setattr(AsyncTransaction, "__aexit__", commit_then_lose)
    with serve(create_app(facade_settings(database_url, simulator_url))) as url:
        async with client_for(url) as api:
            create_key = key()
            body = invoice_body()
            answer = await api.post("/v1/invoices", json=body, headers=create_key)
            assert (answer.status_code, answer.json()["code"]) == (503, "service_unavailable")
            assert "nothing was applied" not in answer.json()["detail"]
            assert "may or may not have been applied" in answer.json()["detail"]
            retried = await api.post(
                "/v1/invoices", json=body, headers={**create_key, "Prefer": "wait=10"}
            )
            assert retried.status_code == 201, retried.text  # it had been applied
            assert retried.headers["idempotent-replayed"] == "true"
