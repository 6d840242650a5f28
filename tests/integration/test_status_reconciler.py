"""The status reconciler: payments whose webhook never came still reach the store (the simulator of these
tests sends no webhooks), and only open invoices are re-read."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cybersource.client import CybersourceClients
from app.db import create_engine
from app.main import create_app
from app.repository import Repository
from app.service import InvoiceService, record_upstream_state
from app.status_reconciler import StatusReconciler
from app.upstream_state import UpstreamState
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.support.postgres import fresh_database
from tests.support.servers import serve


async def _eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll `check` (a plain or an async function) until it returns something true, or time runs out."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


def _checks(outcome: str) -> float:
    return REGISTRY.get_sample_value("igw_reconciler_checks_total", {"outcome": outcome}) or 0.0


async def _sent_invoice(api: httpx.AsyncClient, total: str = "100.00") -> str:
    body = invoice_body(total, allowPartialPayments=True)
    created = await api.post("/v1/invoices", json=body, headers=key())
    assert created.status_code == 201, created.text
    number: str = created.json()["invoiceNumber"]
    sent = await api.post(f"/v1/invoices/{number}/send", headers=key())
    assert sent.status_code == 200, sent.text
    return number


async def test_payments_without_webhooks_reach_the_store(simulator_url: str, sim: httpx.AsyncClient):
    with fresh_database() as database_url:
        settings = facade_settings(database_url, simulator_url, reconcile_after_seconds=0.5)
        with serve(create_app(settings)) as url:
            async with client_for(url) as api:
                number = await _sent_invoice(api)
                paid = await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "40.00"})
                assert paid.status_code == 200, paid.text

                async def status_is(expected: str) -> dict[str, Any] | None:
                    body: dict[str, Any] = (await api.get(f"/v1/invoices/{number}")).json()
                    return body if body["status"] == expected else None

                partial = await _eventually(lambda: status_is("PARTIAL"))
                assert partial and partial["balanceAmount"] == "60.00"
                await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "60.00"})
                done = await _eventually(lambda: status_is("PAID"))
                assert done and done["balanceAmount"] == "0.00"
                events = (await api.get("/v1/events", params={"limit": 100})).json()["items"]
                assert [e["type"] for e in events if e["invoiceNumber"] == number] == [
                    "invoice.created", "invoice.sent", "invoice.partially_paid", "invoice.paid"]


async def test_an_invoice_whose_last_command_failed_is_still_reconciled(simulator_url: str,
                                                                          sim: httpx.AsyncClient):
    """A rejected update leaves the invoice SENT with `sync.state: failed`; its payment link still works."""
    with fresh_database() as database_url:
        settings = facade_settings(database_url, simulator_url, reconcile_after_seconds=0.3)
        with serve(create_app(settings)) as url:
            async with client_for(url) as api:
                number = await _sent_invoice(api)
                await sim.post("/__sim/faults", json={"method": "PUT", "path": f"/invoicing/v2/invoices/{number}",
                                                      "status": 400, "times": 1})
                update = {k: v for k, v in invoice_body("100.00").items() if k != "invoiceInformation"}
                update["invoiceInformation"] = {"description": "Changed", "dueDate": "2026-12-31"}
                rejected = await api.put(f"/v1/invoices/{number}", json=update, headers=key())
                assert rejected.status_code == 422, rejected.text
                await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})

                async def paid() -> dict[str, Any] | None:
                    body: dict[str, Any] = (await api.get(f"/v1/invoices/{number}")).json()
                    return body if body["status"] == "PAID" else None

                body = await _eventually(paid)
                assert body, "the invoice with a failed command was not re-read"
                assert body["sync"]["state"] == "failed"  # the failed update stays visible


async def test_a_payment_under_review_is_followed_until_decided(simulator_url: str, sim: httpx.AsyncClient):
    """PENDING (a payment waiting for a decision) allows no action, and stays open for the reconciler."""
    with fresh_database() as database_url:
        settings = facade_settings(database_url, simulator_url, reconcile_after_seconds=0.3)
        with serve(create_app(settings)) as url:
            async with client_for(url) as api:
                number = await _sent_invoice(api)
                review = await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00", "review": True})
                assert review.status_code == 200, review.text
                assert await _eventually(lambda: _status(api, number, "PENDING"))
                canceled = await api.post(f"/v1/invoices/{number}/cancel", headers=key())
                assert (canceled.status_code, canceled.json()["code"]) == (409, "action_not_allowed")
                decided = await sim.post(f"/__sim/invoices/{number}/payments/pending", json={"decision": "accept"})
                assert decided.status_code == 200, decided.text
                assert await _eventually(lambda: _status(api, number, "PAID"))
                events = (await api.get("/v1/events", params={"limit": 100})).json()["items"]
                assert [e["type"] for e in events if e["invoiceNumber"] == number] == [
                    "invoice.created", "invoice.sent", "invoice.paid"]


async def test_drafts_and_closed_invoices_are_not_read_again(simulator_url: str, sim: httpx.AsyncClient):
    with fresh_database() as database_url:
        settings = facade_settings(database_url, simulator_url, reconcile_after_seconds=0.3)
        with serve(create_app(settings)) as url:
            async with client_for(url) as api:
                draft = await api.post("/v1/invoices", json=invoice_body(), headers=key())
                assert draft.status_code == 201, draft.text
                canceled = await api.post("/v1/invoices", json=invoice_body(), headers=key())
                canceled_number = canceled.json()["invoiceNumber"]
                assert (await api.post(f"/v1/invoices/{canceled_number}/cancel", headers=key())).status_code == 200
                open_number = await _sent_invoice(api)
                # 1 ms latency rules: they only count the reads of each invoice.
                watched = {number: f"watch-{number}" for number in
                           (draft.json()["invoiceNumber"], canceled_number, open_number)}
                for number, rule in watched.items():
                    added = await sim.post("/__sim/faults", json={
                        "id": rule, "action": "latency", "latency_ms": 1, "method": "GET",
                        "path": f"/invoicing/v2/invoices/{number}"})
                    assert added.status_code < 300, added.text

                async def hits() -> dict[str, int]:
                    rules = {r["id"]: r["hits"] for r in (await sim.get("/__sim/faults")).json()}
                    return {number: rules[rule] for number, rule in watched.items()}

                async def open_invoice_read_twice() -> dict[str, int] | None:
                    counted = await hits()
                    return counted if counted[open_number] >= 2 else None

                counted = await _eventually(open_invoice_read_twice)
                assert counted, "the open invoice was not re-read"
                assert counted[draft.json()["invoiceNumber"]] == 0
                assert counted[canceled_number] == 0


async def test_an_unreachable_cybersource_changes_nothing_and_is_tried_again(simulator_url: str,
                                                                              sim: httpx.AsyncClient):
    with fresh_database() as database_url:
        settings = facade_settings(database_url, simulator_url, reconcile_after_seconds=0.3)
        with serve(create_app(settings)) as url:
            async with client_for(url) as api:
                number = await _sent_invoice(api)
                await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
                failed_before = _checks("failed")
                await sim.post("/__sim/faults", json={"method": "GET", "path": f"/invoicing/v2/invoices/{number}",
                                                      "status": 503, "times": 2})
                assert await _eventually(lambda: _checks("failed") >= failed_before + 2)
                assert (await api.get(f"/v1/invoices/{number}")).json()["status"] == "SENT"
                assert await _eventually(lambda: _status(api, number, "PAID")), \
                    "the invoice was not read again after Cybersource came back"


async def _status(api: httpx.AsyncClient, number: str, expected: str) -> bool:
    return bool((await api.get(f"/v1/invoices/{number}")).json()["status"] == expected)


async def test_a_newer_observation_wins_over_an_older_read(simulator_url: str, sim: httpx.AsyncClient):
    """The reconciler reads SENT; before it records that, a refresh records PAID (it holds the invoice row
    meanwhile). The reconciler's older answer must not take the invoice back to SENT."""
    with fresh_database() as database_url:
        settings = facade_settings(database_url, simulator_url, reconcile_after_seconds=0)
        with serve(create_app(settings)) as url:
            async with client_for(url) as api:
                number = await _sent_invoice(api)
        engine = create_engine(database_url)
        clients = CybersourceClients.from_settings(settings)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql("UPDATE invoices SET checked_at = now() - interval '1 hour'")
            async with engine.begin() as conn:
                (due,) = await Repository(conn).claim_invoices_to_reconcile(stale_seconds=60, limit=10)
            reconciler = StatusReconciler(engine, settings, clients)
            async with engine.begin() as newer:
                repo = Repository(newer)
                invoice = await repo.get_invoice(due["merchant_profile"], number, for_update=True)
                assert invoice is not None
                older_read = asyncio.create_task(reconciler.check(due))
                assert await _eventually(lambda: _waiting_for_a_lock(engine)), "the reconciler never got to the row"
                await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
                paid = await clients.get("default").get_invoice(number)
                await record_upstream_state(repo, invoice, UpstreamState.from_body(paid.raw))
            assert await older_read == "superseded"
            async with engine.connect() as conn:
                stored = await Repository(conn).get_invoice(due["merchant_profile"], number)
            assert stored is not None and stored["status"] == "PAID"
        finally:
            await clients.aclose()
            await engine.dispose()


async def _waiting_for_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        waiting = await conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        return bool(waiting.scalar_one())


async def test_a_refresh_or_webhook_reading_overtaken_meanwhile_is_read_again(simulator_url: str,
                                                                               sim: httpx.AsyncClient):
    """record_observation (refresh, webhook): a reading older than what was recorded since is not stored
    as it is; Cybersource is read again, and the newest state stays."""
    with fresh_database() as database_url:
        settings = facade_settings(database_url, simulator_url, reconcile_after_seconds=0)
        with serve(create_app(settings)) as url:
            async with client_for(url) as api:
                number = await _sent_invoice(api)
                engine = create_engine(database_url)
                clients = CybersourceClients.from_settings(settings)
                service = InvoiceService(settings, clients)
                try:
                    async with engine.connect() as conn:
                        seen = await Repository(conn).get_invoice("default", number)
                    assert seen is not None
                    older = await service.read_upstream("default", number)
                    assert older.status == "SENT"
                    await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
                    newer = await api.get(f"/v1/invoices/{number}", params={"refresh": "true"})
                    assert newer.json()["status"] == "PAID"
                    async with engine.begin() as conn:
                        await service.record_observation(conn, "default", seen, older)
                    assert (await api.get(f"/v1/invoices/{number}")).json()["status"] == "PAID"
                finally:
                    await clients.aclose()
                    await engine.dispose()
