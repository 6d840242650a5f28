"""Idempotency keys on every mutating call: real HTTP, the simulator and a real PostgreSQL.

Each rule of the feature has its own test. Upstream creates are counted in the simulator by a unique
invoice description, so "exactly once" means exactly one invoice at the (simulated) Cybersource.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from app.auth.principal import Caller
from app.cybersource.client import CybersourceClients
from app.db import create_engine
from app.idempotency.executor import IdempotentExecutor
from app.idempotency.keys import fingerprint
from app.idempotency.purge import purge_once
from app.idempotency.repository import IdempotencyRepository
from app.invoices.answers import command_outcome
from app.invoices.schemas import InvoiceCreate
from app.invoices.service import InvoiceService
from app.kit.loops import run_until_stopped
from app.main import create_app
from app.outbox.waiter import OperationWaiter
from tests.integration.conftest import KEYS, client_for, facade_settings, invoice_body, key
from tests.support.postgres import fresh_database
from tests.support.servers import serve

CREATE_PATH = "/invoicing/v2/invoices"
BILLING = Caller("billing", frozenset({"invoices:read", "invoices:write"}))


# --- helpers --------------------------------------------------------------------------------------

OwnFacade = tuple[str, Any, str]


@pytest.fixture(scope="module")
def own_facade(simulator_url: str) -> Iterator[OwnFacade]:
    """(url, app, database url): a facade with its relay on a database of its own.

    For the bursts of concurrent requests, the tests that create invoices as "shop" (the session
    database's "shop" invoices belong to the lifecycle tests, which count them) and the test that
    breaks the app's service.
    """
    with fresh_database() as database_url:
        # the simulator is shared: numbers of its own, so a fresh sequence cannot meet the session's
        # ones
        prefix = f"IDEM{uuid.uuid4().hex[:6]}-"
        # a small pool: the bursts below queue for connections instead of taking the shared server's
        app = create_app(
            facade_settings(
                database_url, simulator_url, invoice_number_prefix=prefix, database_pool_size=5
            )
        )
        with serve(app) as url:
            yield url, app, database_url


def unique_body(**info: Any) -> tuple[dict[str, Any], str]:
    description = f"idempotency {uuid.uuid4().hex}"
    return invoice_body(description=description, **info), description


async def upstream_invoices(sim: httpx.AsyncClient, description: str) -> list[dict[str, Any]]:
    response = await sim.get("/__sim/invoices")
    assert response.status_code == 200, response.text
    return [
        i
        for i in response.json()
        if (i.get("content") or {}).get("invoiceInformation", {}).get("description") == description
    ]


async def local_invoices(client: httpx.AsyncClient, description: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/invoices", params={"limit": 200})
    assert response.status_code == 200, response.text
    return [
        i
        for i in response.json()["items"]
        if i["invoiceInformation"].get("description") == description
    ]


async def fault(sim: httpx.AsyncClient, **rule: Any) -> None:
    response = await sim.post(
        "/__sim/faults", json={"method": "POST", "path": CREATE_PATH, "times": 1, **rule}
    )
    assert response.status_code == 201, response.text


async def db_fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def record_of(database_url: str, client: str, idem_key: str) -> asyncpg.Record | None:
    rows = await db_fetch(
        database_url,
        "SELECT * FROM idempotency_records WHERE client = $1 AND key = $2",
        client,
        idem_key,
    )
    return rows[0] if rows else None


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    return problem


def many_requests(base_url: str, who: str) -> httpx.AsyncClient:
    """One client for a burst of concurrent requests: a connection each."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=60,
        headers={"Authorization": f"Bearer {KEYS[who]}"},
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )


def replayed(response: httpx.Response) -> bool:
    return response.headers.get("idempotent-replayed") == "true"


# --- the header -----------------------------------------------------------------------------------


async def test_key_is_required_on_every_post_and_put(facade_url: str, api: httpx.AsyncClient):
    number = (await api.post("/v1/invoices", json=invoice_body(), headers=key())).json()[
        "invoiceNumber"
    ]
    async with client_for(facade_url, "ops") as ops:  # admin: every mutating route is open to it
        calls = [
            ("POST", "/v1/invoices", invoice_body()),
            ("PUT", f"/v1/invoices/{number}", invoice_body()),
            ("POST", f"/v1/invoices/{number}/publish", None),
            ("POST", f"/v1/invoices/{number}/send", None),
            ("POST", f"/v1/invoices/{number}/cancel", None),
            ("POST", f"/v1/operations/{uuid.uuid4()}/retry", None),
            ("PUT", "/v1/invoice-settings", {"invoiceSettingsInformation": {}}),
        ]
        for method, path, body in calls:
            response = await ops.request(method, path, json=body)
            problem = assert_problem(response, 400, "idempotency_key_missing")
            assert "Idempotency-Key" in problem["detail"]
            blank = await ops.request(method, path, json=body, headers={"Idempotency-Key": ""})
            assert_problem(blank, 400, "idempotency_key_missing")
    # nothing was done: the invoice is still a draft
    assert (await api.get(f"/v1/invoices/{number}")).json()["status"] == "DRAFT"


@pytest.mark.parametrize(
    "bad",
    [
        "has space",
        '"unterminated',
        'quote"inside',
        "back\\slash",
        '""',
        "k" * 256,
        '"' + "k" * 256 + '"',
        '"bad \\n escape"',
    ],
)
async def test_malformed_or_too_long_key_is_400(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, bad: str
):
    body, description = unique_body()
    response = await api.post("/v1/invoices", json=body, headers={"Idempotency-Key": bad})
    problem = assert_problem(response, 400, "idempotency_key_invalid")
    assert "255" in problem["detail"]
    assert await upstream_invoices(sim, description) == []


async def test_longest_key_and_quoted_form_name_the_same_key(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    longest = uuid.uuid4().hex + "k" * (255 - 32)
    body, description = unique_body()
    first = await api.post("/v1/invoices", json=body, headers={"Idempotency-Key": longest})
    assert first.status_code == 201, first.text
    quoted = await api.post("/v1/invoices", json=body, headers={"Idempotency-Key": f'"{longest}"'})
    assert quoted.status_code == 201
    assert replayed(quoted)
    assert quoted.json() == first.json()

    escaped_key = f'say "hi" \\ {uuid.uuid4()}'
    sf_string = '"' + escaped_key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    second_body, second_description = unique_body()
    made = await api.post("/v1/invoices", json=second_body, headers={"Idempotency-Key": sf_string})
    assert made.status_code == 201, made.text
    again = await api.post("/v1/invoices", json=second_body, headers={"Idempotency-Key": sf_string})
    assert replayed(again) and again.json()["invoiceNumber"] == made.json()["invoiceNumber"]
    assert len(await upstream_invoices(sim, description)) == 1
    assert len(await upstream_invoices(sim, second_description)) == 1


# --- replays --------------------------------------------------------------------------------------


async def test_replay_returns_the_stored_answer(api: httpx.AsyncClient, sim: httpx.AsyncClient):
    body, description = unique_body()
    idem = str(uuid.uuid4())
    first = await api.post("/v1/invoices", json=body, headers={"Idempotency-Key": idem})
    assert first.status_code == 201, first.text
    assert not replayed(first)
    number = first.json()["invoiceNumber"]

    for header in (idem, f'"{idem}"'):  # bare token and structured-field string: one key
        again = await api.post("/v1/invoices", json=body, headers={"Idempotency-Key": header})
        assert again.status_code == 201
        assert replayed(again)
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"] == f"/v1/invoices/{number}"
        assert again.headers["content-type"] == first.headers["content-type"] == "application/json"
    # the same body with its keys in another order is the same request
    reordered = {k: body[k] for k in reversed(list(body))}
    assert replayed(
        await api.post("/v1/invoices", json=reordered, headers={"Idempotency-Key": idem})
    )

    assert len(await upstream_invoices(sim, description)) == 1
    assert len(await local_invoices(api, description)) == 1

    # actions replay too, and are applied once upstream
    action_key = key()
    published = await api.post(f"/v1/invoices/{number}/send", headers=action_key)
    assert published.status_code == 200, published.text
    resent = await api.post(f"/v1/invoices/{number}/send", headers=action_key)
    assert resent.status_code == 200 and replayed(resent)
    assert resent.json() == published.json()
    upstream = (await sim.get(f"/__sim/invoices/{number}")).json()
    assert upstream["sendCount"] + upstream["resendCount"] == 1


async def test_same_key_different_request_is_422(api: httpx.AsyncClient, sim: httpx.AsyncClient):
    body, description = unique_body()
    headers = key()
    first = await api.post("/v1/invoices", json=body, headers=headers)
    assert first.status_code == 201, first.text
    number = first.json()["invoiceNumber"]

    other_body = invoice_body(total="101.00", description=description)
    reused = await api.post("/v1/invoices", json=other_body, headers=headers)
    problem = assert_problem(reused, 422, "idempotency_key_reused")
    assert "POST /v1/invoices" in problem["detail"]
    assert not replayed(reused)

    other_path = await api.put(f"/v1/invoices/{number}", json=body, headers=headers)
    assert_problem(other_path, 422, "idempotency_key_reused")
    other_action = await api.post(f"/v1/invoices/{number}/cancel", headers=headers)
    assert_problem(other_action, 422, "idempotency_key_reused")
    # A profile the caller may not act for is refused before the key is looked at (the same key
    # under another profile it may use is 422: tests/integration/test_merchant_authorization.py).
    other_profile = await api.post(
        "/v1/invoices", json=body, headers={**headers, "X-Merchant-Profile": "emea"}
    )
    assert_problem(other_profile, 403, "forbidden")

    # the first answer is still what the key replays; nothing else happened
    assert replayed(again := await api.post("/v1/invoices", json=body, headers=headers))
    assert again.json()["invoiceNumber"] == number
    assert (await api.get(f"/v1/invoices/{number}")).json()["status"] == "DRAFT"
    assert len(await upstream_invoices(sim, description)) == 1


async def test_keys_are_scoped_to_the_caller(own_facade: OwnFacade, sim: httpx.AsyncClient):
    facade_url = own_facade[0]
    body, description = unique_body()
    headers = key()
    async with client_for(facade_url, "billing") as api, client_for(facade_url, "shop") as shop:
        mine = await api.post("/v1/invoices", json=body, headers=headers)
        theirs = await shop.post("/v1/invoices", json=body, headers=headers)
        assert mine.status_code == theirs.status_code == 201, (mine.text, theirs.text)
        assert not replayed(mine) and not replayed(theirs)
        assert mine.json()["invoiceNumber"] != theirs.json()["invoiceNumber"]
        assert (mine.json()["owner"], theirs.json()["owner"]) == ("billing", "shop")
        # a different request under the same key is not "reused" for another caller either
        different = await shop.post("/v1/invoices", json=invoice_body(total="5.00"), headers=key())
        assert different.status_code == 201
        assert len(await local_invoices(shop, description)) == 1
        assert len(await local_invoices(api, description)) == 1
        assert replayed(await shop.post("/v1/invoices", json=body, headers=headers))
    assert len(await upstream_invoices(sim, description)) == 2


# --- a request still running ----------------------------------------------------------------------


async def _wait_for_claim(database_url: str, client: str, idem_key: str) -> asyncpg.Record:
    for _ in range(200):
        record = await record_of(database_url, client, idem_key)
        if record is not None and record["operation_id"] is not None:
            return record
        await asyncio.sleep(0.02)
    raise AssertionError("the first request never committed its claim")


async def test_second_request_while_first_runs_gets_409_or_waits(
    database_url: str, api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    body, description = unique_body()
    idem = str(uuid.uuid4())
    await fault(sim, action="latency", latency_ms=2500)
    first_task = asyncio.create_task(
        api.post("/v1/invoices", json=body, headers={"Idempotency-Key": idem})
    )
    record = await _wait_for_claim(database_url, "billing", idem)
    assert record["state"] == "processing"

    busy = await api.post("/v1/invoices", json=body, headers={"Idempotency-Key": idem})
    problem = assert_problem(busy, 409, "idempotency_key_in_use")
    assert busy.headers["retry-after"] == "1"
    assert problem["retryAfter"] == 1
    assert not first_task.done()

    waited = await api.post(
        "/v1/invoices", json=body, headers={"Idempotency-Key": idem, "Prefer": "wait=10"}
    )
    first = await first_task
    assert first.status_code == 201, first.text
    assert not replayed(first)
    assert waited.status_code == 201, waited.text
    assert replayed(waited)
    assert waited.json()["invoiceNumber"] == first.json()["invoiceNumber"]
    assert waited.headers["location"] == first.headers["location"]
    assert len(await upstream_invoices(sim, description)) == 1


async def test_200_concurrent_requests_with_one_key_create_one_invoice(
    own_facade: OwnFacade, sim: httpx.AsyncClient
):
    facade_url = own_facade[0]
    body, description = unique_body()
    headers = key()
    await fault(
        sim, action="latency", latency_ms=1000
    )  # keep the first one running while the rest arrive
    async with many_requests(facade_url, "billing") as many:
        responses = await asyncio.gather(
            *(many.post("/v1/invoices", json=body, headers=headers) for _ in range(200))
        )
        created = [r for r in responses if r.status_code == 201]
        busy = [r for r in responses if r.status_code == 409]
        assert len(created) + len(busy) == 200, sorted(
            {(r.status_code, r.text[:200]) for r in responses}
        )
        assert len([r for r in created if not replayed(r)]) == 1
        assert {r.json()["invoiceNumber"] for r in created} == {created[0].json()["invoiceNumber"]}
        assert (
            busy
        )  # the first was still running upstream: the others were told so, not made to wait
        for response in busy:
            assert_problem(response, 409, "idempotency_key_in_use")
            assert response.headers["retry-after"] == "1"
        assert len(await local_invoices(many, description)) == 1
    assert len(await upstream_invoices(sim, description)) == 1


async def test_200_concurrent_requests_same_key_two_callers_make_two_invoices(
    own_facade: OwnFacade, sim: httpx.AsyncClient
):
    facade_url = own_facade[0]
    body, description = unique_body()
    headers = key()
    await fault(sim, action="latency", latency_ms=1000, times=2)
    async with (
        many_requests(facade_url, "billing") as billing,
        many_requests(facade_url, "shop") as shop,
    ):
        callers = {"billing": billing, "shop": shop}
        answers = dict(
            zip(
                callers,
                await asyncio.gather(
                    *(
                        asyncio.gather(
                            *(
                                client.post("/v1/invoices", json=body, headers=headers)
                                for _ in range(100)
                            )
                        )
                        for client in callers.values()
                    )
                ),
                strict=True,
            )
        )
        numbers = set()
        for who, responses in answers.items():
            created = [r for r in responses if r.status_code == 201]
            assert len(created) + sum(r.status_code == 409 for r in responses) == 100, (
                who,
                sorted(
                    {
                        (r.status_code, r.text[:300])
                        for r in responses
                        if r.status_code not in (201, 409)
                    }
                ),
            )
            assert len([r for r in created if not replayed(r)]) == 1, who
            assert {(r.json()["owner"], r.json()["invoiceNumber"]) for r in created} == {
                (who, created[0].json()["invoiceNumber"])
            }
            numbers.add(created[0].json()["invoiceNumber"])
        assert len(numbers) == 2
        assert len(await local_invoices(shop, description)) == 1
        assert len(await local_invoices(billing, description)) == 1
    assert len(await upstream_invoices(sim, description)) == 2


# --- 202 and final answers ------------------------------------------------------------------------


async def test_respond_async_202_replays_as_202_with_the_same_operation(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    body, description = unique_body()
    headers = {**key(), "Prefer": "respond-async"}
    await fault(sim, action="latency", latency_ms=300)
    accepted = await api.post("/v1/invoices", json=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    operation = accepted.json()
    assert accepted.headers["location"] == f"/v1/operations/{operation['id']}"
    assert operation["kind"] == "create"

    for _ in range(100):  # let it finish upstream
        state = (await api.get(accepted.headers["location"])).json()["state"]
        if state == "succeeded":
            break
        await asyncio.sleep(0.05)
    assert state == "succeeded"

    again = await api.post("/v1/invoices", json=body, headers=headers)
    assert again.status_code == 202
    assert replayed(again)
    assert again.json() == operation
    assert again.headers["location"] == accepted.headers["location"]
    assert len(await upstream_invoices(sim, description)) == 1


async def test_upstream_rejection_is_a_final_answer_and_is_replayed(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    body, description = unique_body()
    headers = key()
    await fault(sim, action="status", status=400)  # once: a second execution would create it
    rejected = await api.post("/v1/invoices", json=body, headers=headers)
    problem = assert_problem(rejected, 422, "upstream_rejected")
    assert problem["upstream"]["kind"] == "rejected"

    again = await api.post("/v1/invoices", json=body, headers=headers)
    assert_problem(again, 422, "upstream_rejected")
    assert replayed(again)
    assert again.json() == problem
    assert await upstream_invoices(sim, description) == []


async def test_refused_request_keeps_no_record(
    database_url: str, api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    """Refused before anything was written (validation): the key stays free, the retry re-checks."""
    body, description = unique_body()
    headers = key()
    bad = await api.post(
        "/v1/invoices",
        json=invoice_body(total="100.00", invoiceNumber="has space", description=description),
        headers=headers,
    )
    assert bad.status_code == 422, bad.text
    assert await record_of(database_url, "billing", headers["Idempotency-Key"]) is None
    good = await api.post("/v1/invoices", json=body, headers=headers)
    assert good.status_code == 201, good.text
    assert not replayed(good)
    assert len(await upstream_invoices(sim, description)) == 1


# --- crashes --------------------------------------------------------------------------------------


@pytest.fixture
async def executor(database_url: str, simulator_url: str) -> AsyncIterator[IdempotentExecutor]:
    """The facade's executor on the facade's database, in this process (the facade's relay
    delivers)."""
    settings = facade_settings(database_url, simulator_url, relay_in_process=False)
    engine = create_engine(settings.database_url, pool_size=2)
    clients = CybersourceClients.from_settings(settings)
    try:
        reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        yield IdempotentExecutor(
            engine, reads, settings, OperationWaiter(reads, None), command_outcome
        )
    finally:
        await clients.aclose()
        await engine.dispose()


@pytest.fixture
def invoices(executor: IdempotentExecutor) -> InvoiceService:
    """The invoice service whose writes the executor runs (its enqueue steps are called
    directly)."""
    return InvoiceService(
        engine=executor.engine, reads=executor.reads, settings=executor.settings, executor=executor
    )


def _as_the_api_would(body: dict[str, Any]) -> tuple[InvoiceCreate, str]:
    model = InvoiceCreate.model_validate(body)
    return model, fingerprint(
        "POST", "/v1/invoices", model.model_dump(mode="json", exclude_unset=True), scope="default"
    )


async def test_respond_async_answers_202_even_when_the_relay_was_faster(
    executor: IdempotentExecutor, invoices: InvoiceService
):
    body, _ = unique_body()
    model, request_fingerprint = _as_the_api_would(body)
    operations: list[uuid.UUID] = []

    async def create_and_finish_at_once(conn: Any) -> Any:
        accepted = await invoices.enqueue_create(conn, BILLING, "default", model)
        operations.append(accepted.operation_id)
        # As if a relay had delivered it before the request read its answer (bench_api saw this
        # race).
        await conn.execute(
            text("UPDATE operations SET state = 'succeeded' WHERE id = :id"),
            {"id": accepted.operation_id},
        )
        return accepted

    outcome, replayed_answer = await executor.run(
        caller=BILLING,
        key=str(uuid.uuid4()),
        request_fingerprint=request_fingerprint,
        method="POST",
        path="/v1/invoices",
        wait_seconds=0,
        enqueue=create_and_finish_at_once,
    )
    assert not replayed_answer
    assert outcome.status == 202
    assert outcome.headers["Location"] == f"/v1/operations/{operations[0]}"


async def test_killed_after_commit_is_replayed_on_retry(
    database_url: str,
    executor: IdempotentExecutor,
    invoices: InvoiceService,
    api: httpx.AsyncClient,
    sim: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
):
    body, description = unique_body()
    idem = str(uuid.uuid4())
    model, request_fingerprint = _as_the_api_would(body)
    committed = asyncio.Event()

    async def die_while_waiting(
        caller: Any, key: str, operation_id: uuid.UUID, wait_seconds: float, **_: Any
    ) -> Any:
        # the claim, the invoice and the outbox command are committed; no answer yet
        committed.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(executor, "_final_outcome", die_while_waiting)
    request = asyncio.create_task(
        executor.run(
            caller=BILLING,
            key=idem,
            request_fingerprint=request_fingerprint,
            method="POST",
            path="/v1/invoices",
            wait_seconds=10,
            enqueue=lambda conn: invoices.enqueue_create(conn, BILLING, "default", model),
        )
    )
    await asyncio.wait_for(committed.wait(), 10)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request

    record = await record_of(database_url, "billing", idem)
    assert record is not None
    assert record["state"] == "processing" and record["operation_id"] is not None
    assert record["response_status"] is None

    retry = await api.post(
        "/v1/invoices", json=body, headers={"Idempotency-Key": idem, "Prefer": "wait=10"}
    )
    assert retry.status_code == 201, retry.text
    assert replayed(retry)
    number = retry.json()["invoiceNumber"]
    assert retry.headers["location"] == f"/v1/invoices/{number}"
    assert retry.json()["status"] == "DRAFT"
    stored = await record_of(database_url, "billing", idem)
    assert (
        stored is not None and stored["state"] == "completed" and stored["response_status"] == 201
    )

    again = await api.post("/v1/invoices", json=body, headers={"Idempotency-Key": idem})
    assert replayed(again) and again.json() == retry.json()
    assert [i["id"] for i in await upstream_invoices(sim, description)] == [number]
    assert len(await local_invoices(api, description)) == 1


@pytest.mark.parametrize("how", ["exception", "cancelled"])
async def test_killed_before_commit_runs_again_on_retry(
    database_url: str,
    executor: IdempotentExecutor,
    invoices: InvoiceService,
    api: httpx.AsyncClient,
    sim: httpx.AsyncClient,
    how: str,
):
    body, description = unique_body()
    idem = str(uuid.uuid4())
    model, request_fingerprint = _as_the_api_would(body)
    written: list[uuid.UUID] = []
    inserted = asyncio.Event()

    async def enqueue(conn: Any) -> Any:
        accepted = await invoices.enqueue_create(conn, BILLING, "default", model)
        written.append(
            accepted.operation_id
        )  # invoice row and outbox command written, not committed
        if how == "exception":
            raise RuntimeError("the process dies before commit")
        inserted.set()
        await asyncio.Event().wait()

    request = asyncio.create_task(
        executor.run(
            caller=BILLING,
            key=idem,
            request_fingerprint=request_fingerprint,
            method="POST",
            path="/v1/invoices",
            wait_seconds=10,
            enqueue=enqueue,
        )
    )
    if how == "exception":
        with pytest.raises(RuntimeError):
            await request
    else:
        await asyncio.wait_for(inserted.wait(), 10)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    assert len(written) == 1

    assert await record_of(database_url, "billing", idem) is None
    assert await db_fetch(database_url, "SELECT 1 FROM operations WHERE id = $1", written[0]) == []
    assert (
        await db_fetch(
            database_url,
            "SELECT 1 FROM invoices WHERE content->'invoiceInformation'->>'description' = $1",
            description,
        )
        == []
    )

    retry = await api.post("/v1/invoices", json=body, headers={"Idempotency-Key": idem})
    assert retry.status_code == 201, retry.text
    assert not replayed(retry)
    assert len(await upstream_invoices(sim, description)) == 1
    assert len(await local_invoices(api, description)) == 1


async def test_facade_failure_does_not_leave_the_key_stuck(
    own_facade: OwnFacade, sim: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    url, app, database_url = own_facade
    service = app.state.services[InvoiceService]
    original = service.enqueue_create

    async def fail_after_writing(conn: Any, caller: Caller, profile: str, body: Any) -> Any:
        await original(conn, caller, profile, body)
        # e.g. the database connection breaks before commit (an OSError is answered 503 "retry")
        raise ConnectionResetError("connection to the database lost")

    body, description = unique_body()
    headers = key()
    async with client_for(url) as client:
        monkeypatch.setattr(service, "enqueue_create", fail_after_writing)
        failed = await client.post("/v1/invoices", json=body, headers=headers)
        problem = assert_problem(failed, 503, "service_unavailable")
        assert "same Idempotency-Key" in problem["detail"]
        assert failed.headers["retry-after"]
        monkeypatch.undo()
        assert await record_of(database_url, "billing", headers["Idempotency-Key"]) is None

        retry = await client.post("/v1/invoices", json=body, headers=headers)
        assert retry.status_code == 201, retry.text
        assert not replayed(retry)
        assert replayed(await client.post("/v1/invoices", json=body, headers=headers))
        assert len(await local_invoices(client, description)) == 1
    assert len(await upstream_invoices(sim, description)) == 1


# --- retention ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def purge_database() -> Iterator[str]:
    """A database of its own: no other test's records, no facade's housekeeping running on it."""
    with fresh_database() as url:
        yield url


async def _insert_records(
    url: str,
    prefix: str,
    count: int,
    *,
    age: str,
    state: str = "completed",
    locked_for: str = "-1 minute",
) -> set[str]:
    keys = {f"{prefix}-{i}" for i in range(count)}
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO idempotency_records (client, key, fingerprint, method, path, state, "
            "locked_until, response_status, created_at) VALUES ('retention', $1, 'fp', 'POST', "
            "'/v1/invoices', $2, now() + $3::text::interval, "
            "CASE WHEN $2 = 'completed' THEN 201 END, now() - $4::text::interval)",
            [(k, state, locked_for, age) for k in keys],
        )
    finally:
        await conn.close()
    return keys


async def _remaining(url: str) -> set[str]:
    rows = await db_fetch(url, "SELECT key FROM idempotency_records WHERE client = 'retention'")
    return {r["key"] for r in rows}


async def test_old_records_are_purged_in_batches_recent_ones_stay(
    purge_database: str, simulator_url: str
):
    url = purge_database
    await db_fetch(url, "DELETE FROM idempotency_records")
    old = await _insert_records(url, "old", 25, age="25 hours")
    old_abandoned = await _insert_records(url, "abandoned", 3, age="25 hours", state="processing")
    old_still_locked = await _insert_records(
        url, "locked", 1, age="25 hours", state="processing", locked_for="1 minute"
    )
    recent = await _insert_records(url, "recent", 5, age="1 hour")
    recent_running = await _insert_records(
        url, "running", 2, age="1 second", state="processing", locked_for="1 minute"
    )
    almost = await _insert_records(url, "almost", 2, age="23 hours 59 minutes")

    settings = facade_settings(url, simulator_url)
    assert settings.idempotency_retention_hours == 24.0
    engine = create_engine(url, pool_size=2)
    try:
        purged = []
        while True:
            async with engine.begin() as conn:
                count = await IdempotencyRepository(conn).purge(
                    older_than_hours=settings.idempotency_retention_hours, batch=10
                )
            purged.append(count)
            if count == 0:
                break
    finally:
        await engine.dispose()
    assert purged == [10, 10, 8, 0]
    assert await _remaining(url) == old_still_locked | recent | recent_running | almost
    assert not (old | old_abandoned) & await _remaining(url)


async def test_relay_housekeeping_purges_with_the_configured_retention(
    purge_database: str, simulator_url: str, monkeypatch: pytest.MonkeyPatch
):
    url = purge_database
    await db_fetch(url, "DELETE FROM idempotency_records")
    old = await _insert_records(url, "old", 7, age="3 hours")
    kept = await _insert_records(url, "kept", 4, age="1 hour")
    monkeypatch.setenv("IDEMPOTENCY_RETENTION_HOURS", "2")
    monkeypatch.setenv("IDEMPOTENCY_PURGE_BATCH", "3")
    monkeypatch.setenv("HOUSEKEEPING_INTERVAL_SECONDS", "3600")
    settings = facade_settings(url, simulator_url)
    assert (settings.idempotency_retention_hours, settings.idempotency_purge_batch) == (2.0, 3)

    engine = create_engine(url, pool_size=2)
    clients = CybersourceClients.from_settings(settings)
    stop = asyncio.Event()
    housekeeping = asyncio.create_task(
        run_until_stopped(
            "idempotency.purge",
            lambda: purge_once(engine, settings),
            stop,
            idle_seconds=settings.housekeeping_interval_seconds,
        )
    )
    try:
        # three batches of at most 3 in a row, without waiting the hour-long interval in between
        for _ in range(100):
            if not (old & await _remaining(url)):
                break
            await asyncio.sleep(0.05)
        assert await _remaining(url) == kept
    finally:
        stop.set()
        housekeeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await housekeeping
        await clients.aclose()
        await engine.dispose()


async def test_after_retention_the_key_is_forgotten(
    database_url: str, api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    body, description = unique_body()
    headers = key()
    first = await api.post("/v1/invoices", json=body, headers=headers)
    assert first.status_code == 201, first.text
    await db_fetch(
        database_url,
        "UPDATE idempotency_records SET created_at = now() - interval '25 hours' "
        "WHERE client = 'billing' AND key = $1",
        headers["Idempotency-Key"],
    )
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            assert await IdempotencyRepository(conn).purge(older_than_hours=24, batch=1000) >= 1
    finally:
        await engine.dispose()
    assert await record_of(database_url, "billing", headers["Idempotency-Key"]) is None

    second = await api.post("/v1/invoices", json=body, headers=headers)
    assert second.status_code == 201, second.text
    assert not replayed(second)
    assert second.json()["invoiceNumber"] != first.json()["invoiceNumber"]
    assert len(await upstream_invoices(sim, description)) == 2
