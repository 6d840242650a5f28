"""Issue 15: what the relay concludes when things go wrong, each against the simulator over real
HTTP.

- attempt counters per failure class: a 502 "General system failure" limit counts 502s, not all
  attempts, and never a reconciling read's 502;
- a command whose call may have been applied is not dead-lettered while its reconciling read fails;
  if the outcome cannot be read by the age limit it ends `unknown` (not `failed`) and a re-drive
  settles it;
- an idempotency key answers what a re-driven command did, not what it did before;
- a send refused because a cancel got there first is `superseded`, not a failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.integration.conftest import client_for, facade_settings, key
from tests.integration.test_outbox_relay import (
    ASYNC,
    CREATE_PATH,
    OwnFacade,
    WatchingRelay,
    all_events,
    operation,
    queue_commands,
    relay_running,
    sim_history,
    sim_invoice,
    sim_invoices_tagged,
    tagged_body,
)
from tests.integration.waiting import add_fault, fault_hits, until
from tests.support.postgres import fresh_database
from tests.support.servers import serve


def own_number() -> str:
    """A caller-supplied invoice number, so fault rules can be aimed at its invoice."""
    return f"R15X{uuid.uuid4().hex[:12]}"


async def final(client: httpx.AsyncClient, operation_id: str, *states: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        op = await operation(client, operation_id)
        return op if op["state"] in states else None

    return await until(done, timeout=30, interval=0.1, what=f"operation in {states}")


# --- 1. attempt counters per failure class --------------------------------------------------------


async def test_two_503s_and_one_502_do_not_kill_a_create(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    """RELAY_ACCOUNT_ERROR_ATTEMPTS (3) counts 502 "General system failure" answers, not attempts:
    the third attempt is the first 502, and the create goes through on the fourth."""
    tag = uuid.uuid4().hex
    unavailable = await add_fault(
        sim, action="status", status=503, method="POST", path=CREATE_PATH, times=2
    )
    general_failure = await add_fault(
        sim, action="status", status=502, method="POST", path=CREATE_PATH, times=1
    )
    created = await api.post("/v1/invoices", json=tagged_body(tag), headers=key())
    assert created.status_code == 201, created.text
    assert (await fault_hits(sim, unavailable), await fault_hits(sim, general_failure)) == (2, 1)
    [upstream] = await sim_invoices_tagged(sim, tag)
    assert upstream["id"] == created.json()["invoiceNumber"]


async def test_a_reconciling_reads_502s_are_not_account_failures(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    """The create is applied but its answer lost; the reads that must tell answer 502 four times.
    Those are the reconciliation's failures (no limit of their own), not the create's account
    failures."""
    number = own_number()
    lost = await add_fault(
        sim, action="apply_then_drop", method="POST", path=CREATE_PATH, invoice=number, times=1
    )
    reads = await add_fault(sim, action="status", status=502, method="GET", invoice=number, times=4)
    tag = uuid.uuid4().hex
    created = await api.post(
        "/v1/invoices", json=tagged_body(tag, invoiceNumber=number), headers=key()
    )
    assert created.status_code == 201, created.text
    assert (await fault_hits(sim, lost), await fault_hits(sim, reads)) == (1, 4)
    assert [i["id"] for i in await sim_invoices_tagged(sim, tag)] == [number]
    assert await sim_history(sim, number) == ["DRAFT"]


# --- 2. no dead letter before a reconciling read has answered -------------------------------------


async def test_an_ambiguous_create_outlives_the_attempt_limit_while_its_reads_fail(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    """RELAY_MAX_ATTEMPTS is 12; the reconciling read fails 14 times. The create is applied
    upstream, so declaring it failed would be a lie: the relay keeps reading until one answers."""
    number = own_number()
    await add_fault(
        sim, action="apply_then_drop", method="POST", path=CREATE_PATH, invoice=number, times=1
    )
    reads = await add_fault(
        sim, action="status", status=503, method="GET", invoice=number, times=14
    )
    tag = uuid.uuid4().hex
    accepted = await api.post(
        "/v1/invoices",
        json=tagged_body(tag, invoiceNumber=number),
        headers={**key(), **ASYNC},
    )
    assert accepted.status_code == 202, accepted.text
    op = await final(api, accepted.json()["id"], "succeeded", "failed", "unknown")
    assert op["state"] == "succeeded", op
    assert op["attempts"] == 16  # the lost create, 14 failed reads, the read that found it
    assert await fault_hits(sim, reads) == 14
    invoice = (await api.get(f"/v1/invoices/{number}")).json()
    assert (invoice["status"], invoice["sync"]["state"]) == ("DRAFT", "in_sync")
    assert [i["id"] for i in await sim_invoices_tagged(sim, tag)] == [number]


@pytest.fixture
def short_lived(simulator_url: str) -> Iterator[str]:
    """A facade (fresh database, in-process relay) that gives up on a command after three
    seconds."""
    with fresh_database() as url:
        settings = facade_settings(url, simulator_url, relay_max_age_seconds=3)
        with serve(create_app(settings)) as base_url:
            yield base_url


async def test_an_outcome_that_cannot_be_read_ends_unknown_and_a_redrive_settles_it(
    short_lived: str, sim: httpx.AsyncClient
):
    number = own_number()
    await add_fault(
        sim, action="apply_then_drop", method="POST", path=CREATE_PATH, invoice=number, times=1
    )
    await add_fault(sim, action="status", status=503, method="GET", invoice=number)
    tag = uuid.uuid4().hex
    create_key = key()
    async with client_for(short_lived) as api, client_for(short_lived, "ops") as ops:
        created = await api.post(
            "/v1/invoices", json=tagged_body(tag, invoiceNumber=number), headers=create_key
        )
        # Never "could not be delivered": it was (the simulator has it); nobody could tell yet.
        assert created.status_code == 202, created.text
        op = await final(api, created.json()["id"], "succeeded", "failed", "unknown")
        assert op["state"] == "unknown", op
        assert op["lastError"]["kind"] == "unknown"
        invoice = (await api.get(f"/v1/invoices/{number}")).json()
        assert invoice["sync"]["state"] == "unknown"
        assert not [
            e for e in await all_events(api) if e["type"] == "invoice.failed"
        ]  # no failure announced
        replay = await api.post(
            "/v1/invoices", json=tagged_body(tag, invoiceNumber=number), headers=create_key
        )
        assert replay.status_code == 202, replay.text
        listed = (await ops.get("/v1/operations", params={"state": "unknown"})).json()["items"]
        assert [item["id"] for item in listed] == [op["id"]]
        assert not (await ops.get("/v1/operations", params={"state": "failed"})).json()["items"]

        await sim.delete("/__sim/faults")
        redriven = await ops.post(f"/v1/operations/{op['id']}/retry", headers=key())
        assert redriven.status_code == 202, redriven.text
        settled = await final(api, op["id"], "succeeded", "failed", "unknown")
        assert settled["state"] == "succeeded", settled
        invoice = (await api.get(f"/v1/invoices/{number}")).json()
        assert (invoice["status"], invoice["sync"]["state"]) == ("DRAFT", "in_sync")
        answer = await api.post(
            "/v1/invoices", json=tagged_body(tag, invoiceNumber=number), headers=create_key
        )
        assert answer.status_code == 202  # the first answer was 202 and stays the same
    assert [i["id"] for i in await sim_invoices_tagged(sim, tag)] == [number]
    assert await sim_history(sim, number) == ["DRAFT"]  # the re-drive read first: no second create


# --- 3. the idempotency key follows its command to its final outcome ------------------------------


async def test_a_replay_after_a_redrive_answers_what_the_redrive_did(
    facade_url: str, api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    tag = uuid.uuid4().hex
    await add_fault(sim, action="status", status=400, method="POST", path=CREATE_PATH)
    create_key = key()
    refused = await api.post("/v1/invoices", json=tagged_body(tag), headers=create_key)
    assert refused.status_code == 422, refused.text
    operation_id = refused.json()["operationId"]
    replayed = await api.post("/v1/invoices", json=tagged_body(tag), headers=create_key)
    assert (replayed.status_code, replayed.headers.get("idempotent-replayed")) == (422, "true")

    await sim.delete("/__sim/faults")
    async with client_for(facade_url, "ops") as ops:
        redriven = await ops.post(f"/v1/operations/{operation_id}/retry", headers=key())
        assert redriven.status_code == 202, redriven.text
    await final(api, operation_id, "succeeded")

    # The key stored the refusal; the command has since been delivered: the key now says so.
    truth = await api.post("/v1/invoices", json=tagged_body(tag), headers=create_key)
    assert truth.status_code == 201, truth.text
    assert truth.headers.get("idempotent-replayed") == "true"
    number = truth.json()["invoiceNumber"]
    assert (truth.json()["status"], truth.headers["location"]) == (
        "DRAFT",
        f"/v1/invoices/{number}",
    )
    again = await api.post("/v1/invoices", json=tagged_body(tag), headers=create_key)
    assert (again.status_code, again.json()) == (201, truth.json())
    assert [i["id"] for i in await sim_invoices_tagged(sim, tag)] == [number]


# --- 4. a race lost to a cancel -------------------------------------------------------------------


@pytest.fixture
def own(simulator_url: str) -> Iterator[OwnFacade]:
    with fresh_database() as url:
        facade = OwnFacade(url, simulator_url, prefix=f"C{uuid.uuid4().hex[:7]}-")
        with serve(create_app(facade.settings())) as base_url:
            facade.base_url = base_url
            yield facade


async def test_a_send_that_a_cancel_overtook_is_superseded_not_failed(
    own: OwnFacade, sim: httpx.AsyncClient
):
    """Cancel and send queued at once (the local state check is skipped while commands are queued):
    Cybersource cancels, then refuses the send. Both sides agree on CANCELED; nothing failed."""
    tag = uuid.uuid4().hex
    queued = await queue_commands(own.base_url, tag, 1, ("publish", "cancel", "send"))
    [(number, [_, _, cancel_id, send_id])] = list(queued.items())
    async with relay_running(WatchingRelay, own.settings(), "relay-race"):

        async def drained() -> bool:
            return await own.unfinished() == 0

        await until(drained, what="the relay to finish the four commands")
    async with client_for(own.base_url) as api, client_for(own.base_url, "ops") as ops:
        assert (await operation(api, cancel_id))["state"] == "succeeded"
        send = await operation(api, send_id)
        assert send["state"] == "superseded", send
        assert send["lastError"]["kind"] == "superseded"
        invoice = (await api.get(f"/v1/invoices/{number}")).json()
        assert (invoice["status"], invoice["sync"]["state"]) == ("CANCELED", "in_sync")
        assert invoice["sync"]["lastError"] is None
        failed = (await ops.get("/v1/operations", params={"state": "failed"})).json()["items"]
        assert failed == []
        assert "invoice.failed" not in {e["type"] for e in await all_events(api)}
        not_retryable = await ops.post(f"/v1/operations/{send_id}/retry", headers=key())
        assert not_retryable.status_code == 409
    upstream = await sim_invoice(sim, number)
    assert (upstream["status"], upstream["sendCount"]) == ("CANCELED", 0)
