"""The outbox relay against the simulator's faults: retries, dead letters, lost answers, hangs,
several relays on one outbox, a crashed relay and a clean stop. Everything over real HTTP and a real
database.

Waiting is always polling with a deadline (`until`); a sleep is never the assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from app.cybersource.client import CybersourceClients
from app.db import create_engine, listen_dsn
from app.invoices.delivery import CybersourceDelivery
from app.main import create_app
from app.outbox import relay as relay_module
from app.outbox.relay import Limits, Relay
from app.outbox.repository import OUTBOX_CHANNEL, OutboxRepository
from app.outbox.retry import RetryPolicy
from app.settings import Settings
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.integration.waiting import add_fault, fault_hits, until
from tests.support.postgres import fresh_database
from tests.support.servers import serve

CREATE_PATH = "/invoicing/v2/invoices"
ASYNC = {"Prefer": "respond-async"}


# --- helpers --------------------------------------------------------------------------------------


def tagged_body(tag: str, **info: Any) -> dict[str, Any]:
    """An invoice whose description carries `tag`, so the simulator's copies can be counted."""
    body = invoice_body(**info)
    body["invoiceInformation"]["description"] = f"relay test {tag}"
    return body


async def sim_invoice(sim: httpx.AsyncClient, number: str) -> dict[str, Any]:
    response = await sim.get(f"/__sim/invoices/{number}")
    assert response.status_code == 200, response.text
    return response.json()


async def sim_history(sim: httpx.AsyncClient, number: str) -> list[str]:
    """Upstream history events, oldest first (the admin view lists them newest first)."""
    return [h["event"] for h in reversed((await sim_invoice(sim, number))["invoiceHistory"])]


async def sim_invoices_tagged(sim: httpx.AsyncClient, tag: str) -> list[dict[str, Any]]:
    response = await sim.get("/__sim/invoices")
    assert response.status_code == 200
    return [
        i
        for i in response.json()
        if i["content"].get("invoiceInformation", {}).get("description") == f"relay test {tag}"
    ]


async def all_events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["after"] = cursor
        page = (await client.get("/v1/events", params=params)).json()
        if not page["items"]:
            return items
        items.extend(page["items"])
        cursor = page["nextCursor"]


async def event_of(client: httpx.AsyncClient, number: str, event_type: str) -> dict[str, Any]:
    """The (last) event of that type for the invoice, once the feed shows it."""

    async def probe() -> dict[str, Any] | None:
        matches = [
            e
            for e in await all_events(client)
            if e["invoiceNumber"] == number and e["type"] == event_type
        ]
        return matches[-1] if matches else None

    return await until(probe, what=f"{event_type} event of {number}")


async def operation(client: httpx.AsyncClient, operation_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/operations/{operation_id}")
    assert response.status_code == 200, response.text
    return response.json()


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


# --- 1. transient failures are retried until they succeed -----------------------------------------


async def test_create_survives_three_503s(api: httpx.AsyncClient, sim: httpx.AsyncClient):
    tag = uuid.uuid4().hex
    rule = await add_fault(
        sim, action="status", status=503, method="POST", path=CREATE_PATH, times=3
    )
    created = await api.post("/v1/invoices", json=tagged_body(tag), headers=key())
    assert created.status_code == 201, created.text
    number = created.json()["invoiceNumber"]
    assert created.json()["sync"]["state"] == "in_sync"
    assert await fault_hits(sim, rule) == 3

    op = await operation(api, (await event_of(api, number, "invoice.created"))["operationId"])
    assert op["kind"] == "create"
    assert op["state"] == "succeeded"
    assert op["attempts"] == 4
    assert [i["id"] for i in await sim_invoices_tagged(sim, tag)] == [number]
    assert await sim_history(sim, number) == ["DRAFT"]


async def test_create_after_429_waits_for_retry_after(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    tag = uuid.uuid4().hex
    rule = await add_fault(
        sim, action="status", status=429, retry_after="1", method="POST", path=CREATE_PATH, times=1
    )
    started = time.monotonic()
    created = await api.post("/v1/invoices", json=tagged_body(tag), headers=key())
    elapsed = time.monotonic() - started
    assert created.status_code == 201, created.text
    number = created.json()["invoiceNumber"]
    assert await fault_hits(sim, rule) == 1

    op = await operation(api, (await event_of(api, number, "invoice.created"))["operationId"])
    assert op["attempts"] == 2
    # The backoff alone would retry after a few hundredths of a second; Retry-After says one second.
    assert seconds_between(op["createdAt"], op["completedAt"]) >= 0.95, op
    assert elapsed >= 0.95
    assert [i["id"] for i in await sim_invoices_tagged(sim, tag)] == [number]


# --- 2. a permanent refusal is dead-lettered, and an operator can re-drive it ---------------------


async def test_permanent_400_fails_the_operation_and_ops_can_retry_it(
    facade_url: str, api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    tag = uuid.uuid4().hex
    refusal = {
        "submitTimeUtc": "2026-01-01T00:00:00Z",
        "status": "BADREQUEST",
        "reason": "VALIDATION_ERROR",
        "message": "Field validation errors.",
        "details": [{"field": "customerInformation.email", "reason": "INVALID_DATA"}],
    }
    rule = await add_fault(
        sim, action="status", status=400, body=refusal, method="POST", path=CREATE_PATH
    )

    refused = await api.post("/v1/invoices", json=tagged_body(tag), headers=key())
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "upstream_rejected"
    assert problem["upstream"]["kind"] == "rejected"
    assert problem["upstream"]["status"] == 400
    assert problem["upstream"]["reason"] == "VALIDATION_ERROR"
    assert problem["upstream"]["details"][0]["field"] == "customerInformation.email"
    assert problem["errors"] == [{"field": "customerInformation.email", "message": "INVALID_DATA"}]
    operation_id = problem["operationId"]
    assert await fault_hits(sim, rule) == 1  # a refusal is final: not retried

    failed = await operation(api, operation_id)
    assert failed["state"] == "failed"
    assert failed["attempts"] == 1
    assert failed["lastError"]["reason"] == "VALIDATION_ERROR"
    number = failed["invoiceNumber"]
    invoice = (await api.get(f"/v1/invoices/{number}")).json()
    assert invoice["status"] is None
    assert invoice["sync"]["state"] == "failed"
    assert invoice["sync"]["lastError"]["reason"] == "VALIDATION_ERROR"
    failure = await event_of(api, number, "invoice.failed")
    assert failure["operationId"] == operation_id
    assert await sim_invoices_tagged(sim, tag) == []

    async with client_for(facade_url, "ops") as ops:
        listed: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"state": "failed", "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = await ops.get("/v1/operations", params=params)
            assert page.status_code == 200, page.text
            assert all(item["state"] == "failed" for item in page.json()["items"])
            listed += [item["id"] for item in page.json()["items"]]
            cursor = page.json()["nextCursor"]
            if cursor is None:
                break
        assert operation_id in listed
        # billing is no operator
        assert (await api.get("/v1/operations", params={"state": "failed"})).status_code == 403

        await sim.delete("/__sim/faults")
        retry_key = key()
        retried = await ops.post(f"/v1/operations/{operation_id}/retry", headers=retry_key)
        assert retried.status_code == 202, retried.text
        assert retried.headers["location"] == f"/v1/operations/{operation_id}"

        async def succeeded() -> dict[str, Any] | None:
            op = await operation(ops, operation_id)
            return op if op["state"] == "succeeded" else None

        await until(succeeded, what="the re-driven create")
        replay = await ops.post(f"/v1/operations/{operation_id}/retry", headers=retry_key)
        assert replay.status_code == 202
        assert replay.headers.get("idempotent-replayed") == "true"
        again = await ops.post(f"/v1/operations/{operation_id}/retry", headers=key())
        assert again.status_code == 409  # only failed operations can be re-driven

    invoice = (await api.get(f"/v1/invoices/{number}")).json()
    assert invoice["status"] == "DRAFT"
    assert invoice["sync"]["state"] == "in_sync"
    assert invoice["sync"]["lastError"] is None
    assert [i["id"] for i in await sim_invoices_tagged(sim, tag)] == [number]
    assert await sim_history(sim, number) == ["DRAFT"]


# --- 3-6. the answer is lost, or never comes: reconcile before re-sending -------------------------


@pytest.mark.parametrize("stage", ["headers", "nothing"])
async def test_create_applied_but_answer_lost(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, stage: str
):
    tag = uuid.uuid4().hex
    rule = await add_fault(
        sim, action="apply_then_drop", stage=stage, method="POST", path=CREATE_PATH, times=1
    )
    created = await api.post("/v1/invoices", json=tagged_body(tag), headers=key())
    assert created.status_code == 201, created.text
    number = created.json()["invoiceNumber"]
    assert created.json()["status"] == "DRAFT"
    assert await fault_hits(sim, rule) == 1

    tagged = await sim_invoices_tagged(sim, tag)
    assert [i["id"] for i in tagged] == [number]
    assert await sim_history(sim, number) == ["DRAFT"]
    op = await operation(api, (await event_of(api, number, "invoice.created"))["operationId"])
    assert op["state"] == "succeeded"
    assert op["attempts"] >= 2


async def _draft(api: httpx.AsyncClient, tag: str) -> str:
    created = await api.post("/v1/invoices", json=tagged_body(tag), headers=key())
    assert created.status_code == 201, created.text
    return str(created.json()["invoiceNumber"])


@pytest.mark.parametrize("stage", ["headers", "nothing"])
async def test_send_and_resend_applied_but_answer_lost(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, stage: str
):
    number = await _draft(api, uuid.uuid4().hex)
    delivery = "/invoicing/v2/invoices/*/delivery"

    rule = await add_fault(
        sim, action="apply_then_drop", stage=stage, method="POST", path=delivery, times=1
    )
    sent = await api.post(f"/v1/invoices/{number}/send", headers=key())
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "SENT"
    assert await fault_hits(sim, rule) == 1
    upstream = await sim_invoice(sim, number)
    assert (upstream["sendCount"], upstream["resendCount"]) == (1, 0)
    op = await operation(api, (await event_of(api, number, "invoice.sent"))["operationId"])
    assert op["attempts"] >= 2

    rule = await add_fault(
        sim, action="apply_then_drop", stage=stage, method="POST", path=delivery, times=1
    )
    resent = await api.post(f"/v1/invoices/{number}/send", headers=key())
    assert resent.status_code == 200, resent.text
    assert resent.json()["status"] == "SENT"
    assert await fault_hits(sim, rule) == 1
    upstream = await sim_invoice(sim, number)
    assert (upstream["sendCount"], upstream["resendCount"]) == (1, 1)
    assert await sim_history(sim, number) == ["DRAFT", "CREATE", "SEND", "RESEND"]


@pytest.mark.parametrize("stage", ["headers", "nothing"])
async def test_publish_and_cancel_applied_but_answer_lost(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, stage: str
):
    number = await _draft(api, uuid.uuid4().hex)

    rule = await add_fault(
        sim,
        action="apply_then_drop",
        stage=stage,
        method="POST",
        path="/invoicing/v2/invoices/*/publication",
        times=1,
    )
    published = await api.post(f"/v1/invoices/{number}/publish", headers=key())
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "CREATED"
    assert await fault_hits(sim, rule) == 1
    assert (await sim_invoice(sim, number))["status"] == "CREATED"

    rule = await add_fault(
        sim,
        action="apply_then_drop",
        stage=stage,
        method="POST",
        path="/invoicing/v2/invoices/*/cancelation",
        times=1,
    )
    canceled = await api.post(f"/v1/invoices/{number}/cancel", headers=key())
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "CANCELED"
    assert await fault_hits(sim, rule) == 1
    assert (await sim_invoice(sim, number))["status"] == "CANCELED"
    assert await sim_history(sim, number) == ["DRAFT", "CREATE", "CANCEL"]
    for kind in ("invoice.published", "invoice.canceled"):
        op = await operation(api, (await event_of(api, number, kind))["operationId"])
        assert op["state"] == "succeeded"
        assert op["attempts"] >= 2


async def test_create_hanging_past_read_timeout(api: httpx.AsyncClient, sim: httpx.AsyncClient):
    tag = uuid.uuid4().hex
    rule = await add_fault(sim, action="hang", hang_s=10, method="POST", path=CREATE_PATH, times=1)
    started = time.monotonic()
    created = await api.post("/v1/invoices", json=tagged_body(tag), headers=key())
    assert created.status_code == 201, created.text
    assert time.monotonic() - started >= 1.9  # the read timeout (2 s) had to pass first
    number = created.json()["invoiceNumber"]
    assert await fault_hits(sim, rule) == 1
    assert [i["id"] for i in await sim_invoices_tagged(sim, tag)] == [number]
    assert await sim_history(sim, number) == ["DRAFT"]
    op = await operation(api, (await event_of(api, number, "invoice.created"))["operationId"])
    assert op["attempts"] == 2


# --- 7-9. relays of our own on a database of our own ----------------------------------------------


@dataclass
class OwnFacade:
    """A facade without an in-process relay (the test runs the relays) on a fresh database.

    Its invoice numbers get a prefix of their own: the simulator is shared with the session's
    facade, whose database counts invoice numbers from 1 as well.
    """

    database_url: str
    simulator_url: str
    prefix: str
    base_url: str = ""

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            relay_in_process=False,
            request_wait_seconds=0,
            invoice_number_prefix=self.prefix,
            database_pool_size=4,
        )
        values.update(overrides)
        return facade_settings(self.database_url, self.simulator_url, **values)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def operations(self) -> dict[str, asyncpg.Record]:
        rows = await self.fetch(
            "SELECT o.*, i.invoice_number FROM operations o JOIN invoices i ON i.id = o.invoice_id "
            "ORDER BY o.seq"
        )
        return {str(r["id"]): r for r in rows}

    async def unfinished(self) -> int:
        rows = await self.fetch(
            "SELECT count(*) AS n FROM operations WHERE state IN ('pending', 'in_flight')"
        )
        return int(rows[0]["n"])


@pytest.fixture
def own(simulator_url: str) -> Iterator[OwnFacade]:
    with fresh_database() as url:
        facade = OwnFacade(url, simulator_url, prefix=f"R{uuid.uuid4().hex[:7]}-")
        with serve(create_app(facade.settings())) as base_url:
            facade.base_url = base_url
            yield facade


class WatchingDelivery(CybersourceDelivery):
    """The plain Cybersource handler, noting which reconciliations found the command applied."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reconciled_as_applied: dict[str, bool] = {}

    async def _reconcile(self, client: Any, op: Any, lease: Any) -> dict[str, Any] | None:
        applied = await super()._reconcile(client, op, lease)
        self.reconciled_as_applied[str(op.id)] = applied is not None
        return applied


class WatchingRelay(Relay):
    """A plain relay that notes what it did, for the assertions (it changes no behaviour)."""

    delivery_class: type[CybersourceDelivery] = WatchingDelivery

    def __init__(self, engine: Any, settings: Settings, clients: Any, owner: str) -> None:
        handler = self.delivery_class(engine, settings, clients)
        super().__init__(
            engine,
            OutboxRepository,
            handler,
            retry=RetryPolicy.from_settings(settings),
            limits=Limits.from_settings(settings),
            channel=OUTBOX_CHANNEL,
            owner=owner,
            listen_dsn=listen_dsn(settings),
        )
        self.succeeded: list[str] = []
        self.failed: list[str] = []
        self.claimed_for_reconcile: dict[str, bool] = {}
        self.first_delivery_at: float | None = None

    @property
    def reconciled_as_applied(self) -> dict[str, bool]:
        return self.handler.reconciled_as_applied  # type: ignore[attr-defined,no-any-return]

    async def _deliver(self, op: Any, lease: Any) -> None:
        if self.first_delivery_at is None:
            self.first_delivery_at = time.time()
        self.claimed_for_reconcile[str(op.id)] = bool(op.needs_reconcile)
        await super()._deliver(op, lease)

    def _complete(self, done: Any) -> None:
        (self.succeeded if done.finish.state == "succeeded" else self.failed).append(
            str(done.operation.id)
        )
        super()._complete(done)


@contextlib.asynccontextmanager
async def relay_running(
    cls: type[Relay], settings: Settings, owner: str
) -> AsyncIterator[tuple[Any, Any]]:
    """Run `cls(...)` in this event loop; yields (relay, task). Stops it cleanly on exit unless it
    is done."""
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    clients = CybersourceClients.from_settings(settings)
    relay = cls(engine, settings, clients, owner=owner)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    relay.stop_event = stop  # type: ignore[attr-defined]
    try:
        yield relay, task
    finally:
        if not task.done():
            stop.set()
            await asyncio.wait_for(task, 30)
        await clients.aclose()
        await engine.dispose()


async def queue_commands(
    base_url: str, tag: str, count: int, actions: tuple[str, ...], parallel: int = 16
) -> dict[str, list[str]]:
    """Create `count` invoices and queue `actions` behind each, all with respond-async: number -> op
    ids."""
    queued: dict[str, list[str]] = {}
    gate = asyncio.Semaphore(parallel)
    async with client_for(base_url) as api:

        async def one() -> None:
            async with gate:
                created = await api.post(
                    "/v1/invoices", json=tagged_body(tag), headers={**key(), **ASYNC}
                )
                assert created.status_code == 202, created.text
                number = created.json()["invoiceNumber"]
                ids = [created.json()["id"]]
                for action in actions:
                    queued_action = await api.post(
                        f"/v1/invoices/{number}/{action}", headers={**key(), **ASYNC}
                    )
                    assert queued_action.status_code == 202, queued_action.text
                    assert queued_action.json()["kind"] == action
                    ids.append(queued_action.json()["id"])
                queued[number] = ids

        await asyncio.gather(*(one() for _ in range(count)))
    return queued


async def test_two_relays_drain_a_thousand_commands_exactly_once_in_order(
    own: OwnFacade, sim: httpx.AsyncClient
):
    tag = uuid.uuid4().hex
    queued = await queue_commands(own.base_url, tag, 250, ("publish", "send", "cancel"))
    all_ids = {op_id for ids in queued.values() for op_id in ids}
    assert len(all_ids) == 1000
    before = await own.operations()
    assert {r["state"] for r in before.values()} == {"pending"}  # nobody has delivered anything yet

    settings = own.settings(relay_concurrency=16, relay_batch_size=16)
    async with (
        relay_running(WatchingRelay, settings, "relay-a") as (a, _),
        relay_running(WatchingRelay, settings, "relay-b") as (b, _),
    ):

        async def drained() -> bool:
            return await own.unfinished() == 0

        await until(drained, timeout=60, interval=0.2, what="both relays to drain the outbox")

    after = await own.operations()
    assert {r["state"] for r in after.values()} == {"succeeded"}
    assert not a.failed and not b.failed
    # Each command delivered by exactly one relay, and both relays took part.
    assert len(a.succeeded) == len(set(a.succeeded)) and len(b.succeeded) == len(set(b.succeeded))
    assert not set(a.succeeded) & set(b.succeeded)
    assert set(a.succeeded) | set(b.succeeded) == all_ids
    assert len(a.succeeded) >= 50 and len(b.succeeded) >= 50, (len(a.succeeded), len(b.succeeded))
    assert {r["attempts"] for r in after.values()} == {1}
    assert all(r["lease_owner"] is None for r in after.values())

    upstream = await sim_invoices_tagged(sim, tag)
    assert sorted(i["id"] for i in upstream) == sorted(queued)
    for invoice in upstream:
        history = [h["event"] for h in reversed(invoice["invoiceHistory"])]
        assert history == ["DRAFT", "CREATE", "SEND", "CANCEL"], (invoice["id"], history)
        assert (invoice["status"], invoice["sendCount"], invoice["resendCount"]) == (
            "CANCELED",
            1,
            0,
        )
    # The store agrees on the order: each command finished after the one queued before it.
    for number, ids in queued.items():
        finished = [after[op_id]["completed_at"] for op_id in ids]
        assert finished == sorted(finished), number
        assert [after[op_id]["kind"] for op_id in ids] == ["create", "publish", "send", "cancel"]


class FreezesAfterSending(WatchingDelivery):
    async def _deliver_once(self, client: Any, op: Any, lease: Any) -> dict[str, Any]:
        result = await super()._deliver_once(client, op, lease)
        if op.kind == "send":
            await asyncio.Event().wait()
        return result


class CrashesAfterSending(WatchingRelay):
    """Relay A: a send reaches Cybersource, then the process freezes (before writing anything) until
    it is killed. Killed means no flush, no release of leases: only its sockets and connections go
    away."""

    delivery_class = FreezesAfterSending

    async def _shutdown(self, flusher: asyncio.Task[None], heartbeat: asyncio.Task[None]) -> None:
        tasks = [flusher, heartbeat, *self._in_flight]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.listener.stop()


async def test_a_crashed_relays_commands_are_taken_over_and_reconciled(
    own: OwnFacade, sim: httpx.AsyncClient
):
    tag = uuid.uuid4().hex
    queued = await queue_commands(own.base_url, tag, 12, ("send",))
    sends = {ids[1]: number for number, ids in queued.items()}
    # Four of the sends are still on their way (slowed down in the simulator) when relay A dies.
    await add_fault(
        sim,
        action="latency",
        latency_ms=1000,
        method="POST",
        path="/invoicing/v2/invoices/*/delivery",
        times=4,
    )

    async def sends_held_and_eight_emailed() -> set[str] | None:
        held = [
            r
            for r in (await own.operations()).values()
            if r["kind"] == "send" and r["state"] == "in_flight" and r["lease_owner"] == "relay-a"
        ]
        emailed = {i["id"] for i in await sim_invoices_tagged(sim, tag) if i["sendCount"] == 1}
        return emailed if len(held) == 12 and len(emailed) >= 8 else None

    async with relay_running(
        CrashesAfterSending, own.settings(relay_lease_seconds=2), "relay-a"
    ) as (a, task):
        applied_by_a = await until(
            sends_held_and_eight_emailed, what="relay A to hold the sends, 8 e-mailed"
        )
        held = [r for r in (await own.operations()).values() if r["kind"] == "send"]
        lease_expires = max(r["lease_expires_at"] for r in held).timestamp()
        task.cancel()  # kill -9
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert set(a.succeeded) == {ids[0] for ids in queued.values()}  # A did the creates
    # Nothing was released: the sends are still leased by the dead relay.
    held = [r for r in (await own.operations()).values() if r["kind"] == "send"]
    assert {(r["state"], r["lease_owner"]) for r in held} == {("in_flight", "relay-a")}

    async with relay_running(WatchingRelay, own.settings(), "relay-b") as (b, _):

        async def drained() -> bool:
            return await own.unfinished() == 0

        await until(drained, timeout=20, interval=0.1, what="relay B to take over")

    after = await own.operations()
    assert {r["state"] for r in after.values()} == {"succeeded"}
    assert set(b.succeeded) == set(sends)
    assert b.first_delivery_at is not None and b.first_delivery_at >= lease_expires - 0.1
    assert all(
        b.claimed_for_reconcile[op_id] for op_id in sends
    )  # taken over: look before re-sending
    for op_id, number in sends.items():
        assert after[op_id]["attempts"] == 2
        if number in applied_by_a:
            assert b.reconciled_as_applied[op_id], number
    upstream = await sim_invoices_tagged(sim, tag)
    assert sorted(i["id"] for i in upstream) == sorted(queued)
    for invoice in upstream:
        history = [h["event"] for h in reversed(invoice["invoiceHistory"])]
        assert history == ["DRAFT", "CREATE", "SEND"], (invoice["id"], history)
        assert (invoice["status"], invoice["sendCount"], invoice["resendCount"]) == ("SENT", 1, 0)


async def test_clean_stop_finishes_calls_in_flight_and_claims_nothing_more(
    own: OwnFacade, sim: httpx.AsyncClient
):
    """SIGTERM while four creates are on their way (slowed down upstream) and four publishes wait
    behind them: the relay waits for the creates, writes their results, and leaves the publishes
    untouched."""
    tag = uuid.uuid4().hex
    queued = await queue_commands(own.base_url, tag, 4, ("publish",))
    creates = {ids[0] for ids in queued.values()}
    publishes = {ids[1] for ids in queued.values()}
    await add_fault(sim, action="latency", latency_ms=1000, method="POST", path=CREATE_PATH)
    async with relay_running(WatchingRelay, own.settings(relay_concurrency=8), "relay-stop") as (
        relay,
        task,
    ):

        async def creates_in_flight() -> bool:
            rows = await own.fetch(
                "SELECT id FROM operations WHERE state = 'in_flight' AND lease_owner = $1",
                "relay-stop",
            )
            return {str(r["id"]) for r in rows} == creates

        await until(creates_in_flight, what="the four creates in flight")
        stopped_at = time.monotonic()
        relay.stop_event.set()  # what SIGTERM does
        await asyncio.wait_for(task, 10)
        # It waited for the calls instead of cutting them off (they take a second upstream).
        assert time.monotonic() - stopped_at >= 0.3

    after = await own.operations()
    assert {(after[i]["state"], after[i]["attempts"]) for i in creates} == {("succeeded", 1)}
    assert {
        (after[i]["state"], after[i]["attempts"], after[i]["lease_owner"]) for i in publishes
    } == {("pending", 0, None)}
    assert not [
        r for r in after.values() if r["state"] == "in_flight" or r["lease_owner"] is not None
    ]
    assert sorted(relay.succeeded) == sorted(creates)
    upstream = await sim_invoices_tagged(sim, tag)
    assert sorted(i["id"] for i in upstream) == sorted(queued)
    assert {i["status"] for i in upstream} == {"DRAFT"}


class SlowAnswer(WatchingDelivery):
    async def _deliver_once(self, client: Any, op: Any, lease: Any) -> dict[str, Any]:
        result = await super()._deliver_once(client, op, lease)
        if op.kind == "send":
            await asyncio.sleep(30)
        return result


class SlowAnswerRelay(WatchingRelay):
    """Cybersource applied the send, but its answer takes longer than the relay's shutdown grace."""

    delivery_class = SlowAnswer


async def test_clean_stop_releases_what_it_could_not_finish_for_reconciliation(
    own: OwnFacade, sim: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(relay_module, "SHUTDOWN_GRACE_SECONDS", 0.5)
    tag = uuid.uuid4().hex
    queued = await queue_commands(own.base_url, tag, 1, ("send",))
    [(number, [create_id, send_id])] = list(queued.items())

    async def emailed() -> bool:
        return (
            (await sim_invoice(sim, number))["sendCount"] == 1
            if await sim_invoices_tagged(sim, tag)
            else False
        )

    async with relay_running(SlowAnswerRelay, own.settings(), "relay-slow") as (relay, task):
        await until(emailed, what="the send to reach the simulator")
        relay.stop_event.set()
        await asyncio.wait_for(task, 10)

    after = await own.operations()
    assert after[create_id]["state"] == "succeeded"
    # Released, not left in flight: another relay can take it at once (not after the lease).
    assert (after[send_id]["state"], after[send_id]["lease_owner"]) == ("pending", None)

    async with relay_running(WatchingRelay, own.settings(), "relay-next") as (nxt, _):

        async def drained() -> bool:
            return await own.unfinished() == 0

        await until(drained, what="the next relay to finish the send")
    assert nxt.succeeded == [send_id]
    upstream = await sim_invoice(sim, number)
    assert (upstream["status"], upstream["sendCount"], upstream["resendCount"]) == (
        "SENT",
        1,
        0,
    )  # one e-mail
    assert await sim_history(sim, number) == ["DRAFT", "CREATE", "SEND"]
    assert nxt.reconciled_as_applied.get(send_id) is True


async def test_clean_stop_writes_results_whose_flush_it_interrupted(
    own: OwnFacade, sim: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    """SIGTERM while a batch of results is being written: the batch is written at shutdown, not
    dropped (a dropped batch would be released and delivered a second time)."""
    tag = uuid.uuid4().hex
    queued = await queue_commands(own.base_url, tag, 1, ("publish",))
    [(number, [create_id, publish_id])] = list(queued.items())
    original = OutboxRepository.finish
    writing = asyncio.Event()

    async def slow_write(self: OutboxRepository, owner: str, completions: Any) -> Any:
        if owner == "relay-flush" and any(str(c.operation_id) == publish_id for c in completions):
            writing.set()
            await asyncio.sleep(0.5)
        return await original(self, owner, completions)

    monkeypatch.setattr(OutboxRepository, "finish", slow_write)
    async with relay_running(WatchingRelay, own.settings(), "relay-flush") as (relay, task):
        await asyncio.wait_for(writing.wait(), 15)
        relay.stop_event.set()
        await asyncio.wait_for(task, 10)

    after = await own.operations()
    assert [after[create_id]["state"], after[publish_id]["state"]] == ["succeeded", "succeeded"]
    assert after[publish_id]["attempts"] == 1
    assert await sim_history(sim, number) == ["DRAFT", "CREATE"]


async def test_a_database_error_while_claiming_does_not_stop_the_relay(
    own: OwnFacade, sim: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    tag = uuid.uuid4().hex
    queued = await queue_commands(own.base_url, tag, 1, ())
    [(number, [create_id])] = list(queued.items())
    original = OutboxRepository.claim_due
    failures = []

    async def flaky_claim(self: OutboxRepository, *, owner: str, **kwargs: Any) -> Any:
        if owner == "relay-blip" and not failures:
            failures.append(owner)
            raise ConnectionRefusedError("the database is restarting")
        return await original(self, owner=owner, **kwargs)

    monkeypatch.setattr(OutboxRepository, "claim_due", flaky_claim)
    async with relay_running(WatchingRelay, own.settings(), "relay-blip") as (relay, task):

        async def delivered_or_dead() -> bool:
            return task.done() or (await own.operations())[create_id]["state"] == "succeeded"

        await until(delivered_or_dead, what="the create after a failed claim")
        assert not task.done(), task.exception()
    assert failures == ["relay-blip"]
    assert relay.succeeded == [create_id]
    assert await sim_history(sim, number) == ["DRAFT"]
