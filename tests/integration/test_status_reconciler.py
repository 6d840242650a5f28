"""The status reconciler: payments whose webhook never came still reach the store (the simulator of
these tests sends no webhooks), and only open invoices are re-read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import REGISTRY

from app.cybersource.client import CybersourceClients
from app.db import create_engine
from app.invoices.repository import InvoiceRepository
from app.invoices.upstream_state import UpstreamState
from app.main import create_app
from app.settings import Settings
from app.upstream_sync.reconciler import StatusReconciler
from app.upstream_sync.repository import UpstreamSyncRepository
from app.upstream_sync.service import UpstreamSyncService, record_upstream_state
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.integration.waiting import add_fault, fault_hits, until, waiting_for_a_lock
from tests.support.postgres import fresh_database
from tests.support.servers import serve


@dataclass
class Facade:
    api: httpx.AsyncClient
    database_url: str
    settings: Settings


@contextlib.asynccontextmanager
async def facade(
    simulator_url: str, reconcile_after_seconds: float, **overrides: Any
) -> AsyncIterator[Facade]:
    """A facade of its own (fresh database, in-process relay and reconciler) on the session's
    simulator."""
    with fresh_database() as database_url:
        settings = facade_settings(
            database_url,
            simulator_url,
            reconcile_after_seconds=reconcile_after_seconds,
            **overrides,
        )
        with serve(create_app(settings)) as url:
            async with client_for(url) as api:
                yield Facade(api, database_url, settings)


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


async def _status(api: httpx.AsyncClient, number: str, expected: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (await api.get(f"/v1/invoices/{number}")).json()
    return body if body["status"] == expected else None


async def test_payments_without_webhooks_reach_the_store(
    simulator_url: str, sim: httpx.AsyncClient
):
    async with facade(simulator_url, reconcile_after_seconds=0.5) as own:
        number = await _sent_invoice(own.api)
        paid = await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "40.00"})
        assert paid.status_code == 200, paid.text
        partial = await until(
            lambda: _status(own.api, number, "PARTIAL"), what="PARTIAL in the store"
        )
        assert partial["balanceAmount"] == "60.00"
        await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "60.00"})
        done = await until(lambda: _status(own.api, number, "PAID"), what="PAID in the store")
        assert done["balanceAmount"] == "0.00"
        events = (await own.api.get("/v1/events", params={"limit": 100})).json()["items"]
        assert [e["type"] for e in events if e["invoiceNumber"] == number] == [
            "invoice.created",
            "invoice.sent",
            "invoice.partially_paid",
            "invoice.paid",
        ]


async def test_an_invoice_whose_last_command_failed_is_still_reconciled(
    simulator_url: str, sim: httpx.AsyncClient
):
    """A rejected update leaves the invoice SENT with `sync.state: failed`; its payment link still
    works."""
    async with facade(simulator_url, reconcile_after_seconds=0.3) as own:
        number = await _sent_invoice(own.api)
        await add_fault(
            sim, method="PUT", path=f"/invoicing/v2/invoices/{number}", status=400, times=1
        )
        update = {k: v for k, v in invoice_body("100.00").items() if k != "invoiceInformation"}
        update["invoiceInformation"] = {"description": "Changed", "dueDate": "2026-12-31"}
        rejected = await own.api.put(f"/v1/invoices/{number}", json=update, headers=key())
        assert rejected.status_code == 422, rejected.text
        await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
        body = await until(
            lambda: _status(own.api, number, "PAID"),
            what="the invoice with a failed command to be re-read",
        )
        assert body["sync"]["state"] == "failed"  # the failed update stays visible


async def test_a_payment_under_review_is_followed_until_decided(
    simulator_url: str, sim: httpx.AsyncClient
):
    """PENDING (a payment waiting for a decision) allows no action, and stays open for the
    reconciler."""
    async with facade(simulator_url, reconcile_after_seconds=0.3) as own:
        number = await _sent_invoice(own.api)
        review = await sim.post(
            f"/__sim/invoices/{number}/payments", json={"amount": "100.00", "review": True}
        )
        assert review.status_code == 200, review.text
        await until(lambda: _status(own.api, number, "PENDING"), what="PENDING in the store")
        canceled = await own.api.post(f"/v1/invoices/{number}/cancel", headers=key())
        assert (canceled.status_code, canceled.json()["code"]) == (409, "action_not_allowed")
        decided = await sim.post(
            f"/__sim/invoices/{number}/payments/pending", json={"decision": "accept"}
        )
        assert decided.status_code == 200, decided.text
        await until(lambda: _status(own.api, number, "PAID"), what="PAID in the store")
        events = (await own.api.get("/v1/events", params={"limit": 100})).json()["items"]
        # Issue 9: the review is an event of its own, and its acceptance is the payment (never a
        # second invoice.sent).
        assert [e["type"] for e in events if e["invoiceNumber"] == number] == [
            "invoice.created",
            "invoice.sent",
            "invoice.payment_pending",
            "invoice.paid",
        ]


async def test_drafts_and_closed_invoices_are_not_read_again(
    simulator_url: str, sim: httpx.AsyncClient
):
    async with facade(simulator_url, reconcile_after_seconds=0.3) as own:
        api = own.api
        draft = await api.post("/v1/invoices", json=invoice_body(), headers=key())
        assert draft.status_code == 201, draft.text
        canceled = await api.post("/v1/invoices", json=invoice_body(), headers=key())
        canceled_number = canceled.json()["invoiceNumber"]
        assert (
            await api.post(f"/v1/invoices/{canceled_number}/cancel", headers=key())
        ).status_code == 200
        open_number = await _sent_invoice(api)
        # 1 ms latency rules: they only count the reads of each invoice.
        watched = {
            number: await add_fault(
                sim,
                action="latency",
                latency_ms=1,
                method="GET",
                path=f"/invoicing/v2/invoices/{number}",
            )
            for number in (draft.json()["invoiceNumber"], canceled_number, open_number)
        }

        async def open_invoice_read_twice() -> dict[str, int] | None:
            counted = {number: await fault_hits(sim, rule) for number, rule in watched.items()}
            return counted if counted[open_number] >= 2 else None

        counted = await until(open_invoice_read_twice, what="the open invoice to be re-read")
        assert counted[draft.json()["invoiceNumber"]] == 0
        assert counted[canceled_number] == 0


async def test_an_unreachable_cybersource_changes_nothing_and_is_tried_again(
    simulator_url: str, sim: httpx.AsyncClient
):
    async with facade(simulator_url, reconcile_after_seconds=0.3) as own:
        number = await _sent_invoice(own.api)
        await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
        failed_before = _checks("failed")
        await add_fault(
            sim, method="GET", path=f"/invoicing/v2/invoices/{number}", status=503, times=2
        )
        await until(lambda: _checks("failed") >= failed_before + 2, what="two failed reads")
        assert (await own.api.get(f"/v1/invoices/{number}")).json()["status"] == "SENT"
        await until(
            lambda: _status(own.api, number, "PAID"),
            what="the invoice to be read again after Cybersource came back",
        )


async def test_a_newer_observation_wins_over_an_older_read(
    simulator_url: str, sim: httpx.AsyncClient
):
    """The reconciler reads SENT; before it records that, a refresh records PAID (it holds the
    invoice row meanwhile). The reconciler's older answer must not take the invoice back to SENT."""
    async with facade(simulator_url, reconcile_after_seconds=0) as own:
        number = await _sent_invoice(own.api)
        engine = create_engine(own.database_url)
        clients = CybersourceClients.from_settings(own.settings)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(
                    "UPDATE invoices SET checked_at = now() - interval '1 hour'"
                )
            async with engine.begin() as conn:
                (due,) = await UpstreamSyncRepository(conn).claim_invoices_to_reconcile(
                    stale_seconds=60, limit=10
                )
            reconciler = StatusReconciler(engine, own.settings, clients)
            async with engine.begin() as newer:
                invoice = await InvoiceRepository(newer).get(
                    due.merchant_profile, number, for_update=True
                )
                assert invoice is not None
                older_read = asyncio.create_task(reconciler.check(due))
                await until(
                    lambda: waiting_for_a_lock(own.database_url),
                    what="the reconciler to reach the row",
                )
                await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
                paid = await clients.get("default").get_invoice(number)
                await record_upstream_state(newer, invoice, UpstreamState.from_body(paid.raw))
            assert await older_read == "superseded"
            async with engine.connect() as conn:
                stored = await InvoiceRepository(conn).get(due.merchant_profile, number)
            assert stored is not None and stored.status == "PAID"
        finally:
            await clients.aclose()
            await engine.dispose()


async def test_a_refresh_or_webhook_reading_overtaken_meanwhile_is_read_again(
    simulator_url: str, sim: httpx.AsyncClient
):
    """record_newest (refresh, webhook): a reading older than what was recorded since is not stored
    as it is; Cybersource is read again, and the newest state stays."""
    async with facade(simulator_url, reconcile_after_seconds=0) as own:
        number = await _sent_invoice(own.api)
        engine = create_engine(own.database_url)
        clients = CybersourceClients.from_settings(own.settings)
        service = UpstreamSyncService(
            engine=engine, reads=engine, settings=own.settings, clients=clients
        )
        try:
            async with engine.connect() as conn:
                seen = await InvoiceRepository(conn).get("default", number)
            assert seen is not None
            older = await service.read_upstream("default", number)
            assert older.status == "SENT"
            await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
            newer = await own.api.get(f"/v1/invoices/{number}", params={"refresh": "true"})
            assert newer.json()["status"] == "PAID"
            assert await service.record_newest("default", seen, older) == "recorded"
            assert (await own.api.get(f"/v1/invoices/{number}")).json()["status"] == "PAID"
        finally:
            await clients.aclose()
            await engine.dispose()


async def test_a_refresh_reads_cybersource_again_without_holding_the_invoice_row(
    simulator_url: str, sim: httpx.AsyncClient
):
    """Issue 15: a refresh whose reading was overtaken (here by a publish's answer) reads
    Cybersource again. That second read is slow; a cancel of the same invoice meanwhile must not
    wait behind it for the row (it answers 202 while the refresh is still reading), nor may the read
    hold a pooled connection."""
    async with facade(
        simulator_url,
        reconcile_after_seconds=0,
        cybersource_read_timeout=15,
        cybersource_total_timeout=20,
    ) as own:
        created = await own.api.post("/v1/invoices", json=invoice_body(), headers=key())
        assert created.status_code == 201, created.text
        number = created.json()["invoiceNumber"]
        read = f"^/invoicing/v2/invoices/{number}$"
        first = await add_fault(
            sim, method="GET", path_regex=read, action="latency", latency_ms=1500, times=1
        )
        again = await add_fault(
            sim, method="GET", path_regex=read, action="latency", latency_ms=8000, times=1
        )
        refresh = asyncio.create_task(
            own.api.get(f"/v1/invoices/{number}", params={"refresh": "true"})
        )
        await until(lambda: fault_hits(sim, first), what="the refresh's first read")
        published = await own.api.post(f"/v1/invoices/{number}/publish", headers=key())
        assert published.status_code == 200, published.text  # its answer is the newer reading
        await until(lambda: fault_hits(sim, again), what="the refresh to read again")
        canceled = await own.api.post(
            f"/v1/invoices/{number}/cancel", headers={**key(), "Prefer": "respond-async"}
        )
        assert canceled.status_code == 202, canceled.text
        assert not refresh.done()  # the cancel did not wait for the refresh's read
        refreshed = await refresh
        assert refreshed.status_code == 200, refreshed.text
