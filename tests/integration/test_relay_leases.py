"""Issue 15: leases kept by a heartbeat and checked before every upstream action, and retries that
wait out a database outage instead of dying with their command still leased.

Relays of our own run in this event loop on a database of our own; the simulator is the session's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.outbox import relay as relay_module
from app.outbox.repository import OutboxRepository
from tests.integration.conftest import client_for, key
from tests.integration.test_outbox_relay import (
    ASYNC,
    CREATE_PATH,
    OwnFacade,
    WatchingDelivery,
    WatchingRelay,
    queue_commands,
    relay_running,
    sim_history,
    sim_invoice,
)
from tests.integration.waiting import add_fault, fault_hits, until
from tests.support.postgres import fresh_database
from tests.support.servers import serve

DELIVERY_PATH = "/invoicing/v2/invoices/*/delivery"


@pytest.fixture
def own(simulator_url: str) -> Iterator[OwnFacade]:
    with fresh_database() as url:
        facade = OwnFacade(url, simulator_url, prefix=f"L{uuid.uuid4().hex[:7]}-")
        with serve(create_app(facade.settings())) as base_url:
            facade.base_url = base_url
            yield facade


async def drained(own: OwnFacade) -> bool:
    return await own.unfinished() == 0


async def created_and_send_queued(own: OwnFacade, tag: str) -> tuple[str, str]:
    """One invoice created upstream (by a relay that is gone again) with its send queued."""
    [(number, _)] = list((await queue_commands(own.base_url, tag, 1, ())).items())
    async with relay_running(WatchingRelay, own.settings(), "relay-create"):
        await until(lambda: drained(own), what="the create")
    async with client_for(own.base_url) as api:
        queued = await api.post(f"/v1/invoices/{number}/send", headers={**key(), **ASYNC})
        assert queued.status_code == 202, queued.text
    return number, str(queued.json()["id"])


async def test_a_send_slower_than_the_lease_keeps_it_and_emails_once(
    own: OwnFacade, sim: httpx.AsyncClient
):
    """The send takes 5 s upstream, the lease is 2 s. Relay A's heartbeat keeps the lease, so relay
    B, running beside it, never takes the send over: one e-mail (without the heartbeat: two)."""
    number, send_id = await created_and_send_queued(own, uuid.uuid4().hex)
    slow = await add_fault(
        sim, action="latency", latency_ms=5000, method="POST", path=DELIVERY_PATH
    )
    settings = own.settings(
        relay_lease_seconds=2,
        relay_poll_interval_seconds=0.1,
        cybersource_read_timeout=10,
        cybersource_total_timeout=15,
    )
    async with relay_running(WatchingRelay, settings, "relay-a") as (a, _):

        async def a_sending() -> bool:
            return await fault_hits(sim, slow) == 1

        await until(a_sending, what="relay A's send to be on its way")
        async with relay_running(WatchingRelay, settings, "relay-b") as (b, _):
            await until(lambda: drained(own), what="the send to finish")
    assert a.succeeded == [send_id] and b.succeeded == []
    assert await fault_hits(sim, slow) == 1
    upstream = await sim_invoice(sim, number)
    assert (upstream["sendCount"], upstream["resendCount"]) == (1, 0)
    assert await sim_history(sim, number) == ["DRAFT", "CREATE", "SEND"]


class PausesBeforeSending(WatchingDelivery):
    """Stops between the baseline read and the send until the test lets it go (a stalled
    process)."""

    go_on: asyncio.Event
    paused: asyncio.Event

    async def _record_baseline(self, *args: Any) -> None:
        await super()._record_baseline(*args)
        self.paused.set()
        await self.go_on.wait()


class StalledRelay(WatchingRelay):
    delivery_class = PausesBeforeSending


async def test_a_relay_whose_lease_was_taken_over_does_not_send(
    own: OwnFacade, sim: httpx.AsyncClient
):
    """Relay A's delivery stalls before its send, with no heartbeat (its database link is gone,
    say), for longer than the lease; the send is taken over (by relay B, or by a new claim of A's
    own) and delivered. When the stalled delivery wakes up, the fence before its send finds its
    lease gone, or it was cancelled: it sends nothing (without the fence: a second e-mail)."""
    number, send_id = await created_and_send_queued(own, uuid.uuid4().hex)
    PausesBeforeSending.go_on = asyncio.Event()
    PausesBeforeSending.paused = asyncio.Event()
    settings = own.settings(relay_lease_seconds=1, relay_poll_interval_seconds=0.1)
    async with relay_running(StalledRelay, settings, "relay-a") as (a, _):

        async def no_heartbeat() -> None:
            return None

        a.leases.beat = no_heartbeat
        await asyncio.wait_for(PausesBeforeSending.paused.wait(), 15)
        async with relay_running(WatchingRelay, settings, "relay-b") as (b, _):
            # Taken over by B, or by A itself in a new claim (which cancels the stalled delivery).
            await until(lambda: drained(own), what="the send to be taken over")
        assert a.succeeded + b.succeeded == [send_id]
        PausesBeforeSending.go_on.set()

        async def a_let_go() -> bool:
            return a.leases.count == 0 and not a._in_flight

        await until(a_let_go, what="relay A to let the stalled delivery go")
    assert a.failed == [] and b.failed == []
    upstream = await sim_invoice(sim, number)
    assert (upstream["sendCount"], upstream["resendCount"]) == (1, 0)
    assert await sim_history(sim, number) == ["DRAFT", "CREATE", "SEND"]


class RecordingLog:
    """The relay module's logger, noting event names (and passing everything on)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.events: list[str] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, *args: Any, **kwargs: Any) -> Any:
            self.events.append(event)
            return getattr(self.inner, level)(event, *args, **kwargs)

        return log


async def test_a_retry_waits_out_a_database_outage_instead_of_stranding_its_command(
    own: OwnFacade, sim: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    """The create fails once (503); writing its retry fails while the database is away (the first
    five tries). The retry is kept and written once the database answers: the create goes through
    long before its 60 s lease would have run out. One warning for the outage, not one per try."""
    [(number, [create_id])] = list(
        (await queue_commands(own.base_url, uuid.uuid4().hex, 1, ())).items()
    )
    await add_fault(sim, action="status", status=503, method="POST", path=CREATE_PATH, times=1)
    original = OutboxRepository.reschedule
    failures: list[str] = []

    async def away(self: OutboxRepository, *args: Any, **kwargs: Any) -> Any:
        if len(failures) < 5:
            failures.append("refused")
            raise ConnectionRefusedError("the database is restarting")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(OutboxRepository, "reschedule", away)
    recording = RecordingLog(relay_module.log)
    monkeypatch.setattr(relay_module, "log", recording)
    async with relay_running(
        WatchingRelay, own.settings(relay_lease_seconds=60), "relay-outage"
    ) as (relay, task):

        async def delivered() -> bool:
            return (await own.operations())[create_id]["state"] == "succeeded"

        await until(delivered, timeout=20, what="the create after the outage")
        assert not task.done()
    assert len(failures) == 5
    assert relay.succeeded == [create_id]
    assert (await own.operations())[create_id]["attempts"] == 2
    assert recording.events.count("relay.flush_failed") == 1
    assert recording.events.count("relay.flush_restored") == 1
    assert await sim_history(sim, number) == ["DRAFT"]
