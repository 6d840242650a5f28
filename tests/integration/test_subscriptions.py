"""Push subscriptions over real HTTP: the facade, the simulator, and local receivers that verify
every delivery with the `standardwebhooks` library exactly as a subscriber would."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest

from app.cybersource.client import CybersourceClients
from app.db import Database
from app.main import create_app
from app.outbox.worker import run_background_jobs
from tests.integration.conftest import facade_settings, invoice_body, key
from tests.integration.waiting import until
from tests.support.postgres import fresh_database
from tests.support.receivers import Receiver
from tests.support.servers import serve

HOOKS = ["invoices:read", "invoices:write", "subscriptions:read", "subscriptions:write"]
CALLERS = {
    "hooks": ("hooks-key", HOOKS),
    "other": ("other-key", HOOKS),
    "boss": ("boss-key", [*HOOKS, "invoices:admin"]),
    "feed-only": ("feed-only-key", ["invoices:read", "invoices:write"]),
}


def api_keys() -> str:
    return json.dumps(
        [
            {"client": client, "sha256": hashlib.sha256(k.encode()).hexdigest(), "scopes": scopes}
            for client, (k, scopes) in CALLERS.items()
        ]
    )


def push_settings(database_url: str, simulator_url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = dict(
        api_keys=api_keys(),
        subscription_backoff_base_seconds=0.05,
        subscription_backoff_cap_seconds=0.3,
        subscription_retry_window_seconds=60.0,
        subscription_timeout_seconds=5.0,
    )
    values.update(overrides)
    return facade_settings(database_url, simulator_url, **values)


@contextmanager
def facade(simulator_url: str, **overrides: Any) -> Iterator[str]:
    with (
        fresh_database() as db,
        serve(create_app(push_settings(db, simulator_url, **overrides))) as url,
    ):
        yield url


@contextmanager
def receiving(receiver: Receiver) -> Iterator[str]:
    with serve(receiver.app(), ready_path="/health") as url:
        yield url + receiver.path


def client(base_url: str, who: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {CALLERS[who][0]}"}
    )


@pytest.fixture(scope="module")
def push_facade(simulator_url: str) -> Iterator[str]:
    with facade(simulator_url) as url:
        yield url


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


@pytest.fixture
async def hooks(push_facade: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client(push_facade, "hooks") as api:
        yield api
    # What a test subscribed is deleted: its receiver is gone, and retries to it only cost time.
    async with client(push_facade, "boss") as boss:
        for sub in (await boss.get("/v1/subscriptions", params={"limit": 200})).json()["items"]:
            await boss.delete(f"/v1/subscriptions/{sub['id']}")


async def subscribe(api: httpx.AsyncClient, url: str, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/subscriptions", headers=key(), json={"url": url, **body})
    assert response.status_code == 201, response.text
    return response.json()


async def new_invoice(api: httpx.AsyncClient) -> str:
    created = await api.post("/v1/invoices", headers=key(), json=invoice_body())
    assert created.status_code == 201, created.text
    return str(created.json()["invoiceNumber"])


async def feed(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = (await api.get("/v1/events", params={"after": cursor} if cursor else {})).json()
        items += page["items"]
        if not page["items"]:
            return items
        cursor = page["nextCursor"]


async def deliveries(api: httpx.AsyncClient, subscription_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/v1/subscriptions/{subscription_id}/deliveries")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_create_shows_the_secret_once_and_the_subscription_is_its_creators(
    hooks, push_facade
):
    body = {"url": "http://127.0.0.1:9/hook", "eventTypes": ["invoice.paid"], "description": "d"}
    idem = key()
    created = await hooks.post("/v1/subscriptions", headers=idem, json=body)
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["secret"].startswith("whsec_") and sub["enabled"] is True
    assert created.headers["Location"] == f"/v1/subscriptions/{sub['id']}"
    replay = await hooks.post("/v1/subscriptions", headers=idem, json=body)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == sub["id"] and replay.json()["secret"] is None
    shown = (await hooks.get(f"/v1/subscriptions/{sub['id']}")).json()
    assert "secret" not in shown and shown["eventTypes"] == ["invoice.paid"]
    listed = (await hooks.get("/v1/subscriptions")).json()["items"]
    assert [s["id"] for s in listed] == [sub["id"]]

    async with client(push_facade, "other") as other, client(push_facade, "feed-only") as feeder:
        assert (await other.get(f"/v1/subscriptions/{sub['id']}")).status_code == 404
        assert (await other.get("/v1/subscriptions")).json()["items"] == []
        refused = await feeder.post("/v1/subscriptions", headers=key(), json=body)
        assert refused.status_code == 403
    async with client(push_facade, "boss") as boss:
        assert (await boss.get(f"/v1/subscriptions/{sub['id']}")).status_code == 200

    changed = await hooks.patch(
        f"/v1/subscriptions/{sub['id']}", headers=key(), json={"enabled": False, "eventTypes": []}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["enabled"] is False and changed.json()["eventTypes"] == []
    assert changed.json()["disabledReason"] == "disabled by its owner"
    no_key = await hooks.patch(f"/v1/subscriptions/{sub['id']}", json={"enabled": True})
    assert no_key.status_code == 400
    gone = await hooks.delete(f"/v1/subscriptions/{sub['id']}")
    assert gone.status_code == 204
    assert (await hooks.get(f"/v1/subscriptions/{sub['id']}")).status_code == 404


async def test_a_subscriber_receives_what_it_may_read_in_the_feed_exactly_as_shown(
    hooks, push_facade
):
    mine, everything = Receiver(), Receiver()
    with receiving(mine) as mine_url, receiving(everything) as all_url:
        async with client(push_facade, "boss") as boss:
            own = await subscribe(hooks, mine_url)
            admin = await subscribe(boss, all_url, eventTypes=["invoice.created"])
            async with client(push_facade, "other") as other:
                foreign = await new_invoice(other)
            number = await new_invoice(hooks)
            sent = await hooks.post(f"/v1/invoices/{number}/send", headers=key())
            assert sent.status_code == 200, sent.text

            await until(lambda: len(mine.delivered()) >= 2, what="created and sent pushed")
            await until(lambda: len(everything.delivered()) >= 2, what="both creates pushed")
            shown = {e["id"]: e for e in await feed(hooks)}
            for received in mine.delivered():
                assert received.verifies_with(own["secret"])
                event = received.event
                assert event == shown[event["id"]]  # the body is the feed's view, field for field
                assert received.headers["webhook-id"] == f"evt_{event['id']}"
            assert [e["type"] for e in mine.delivered_events()] == [
                "invoice.created",
                "invoice.sent",
            ]
            assert {e["invoiceNumber"] for e in mine.delivered_events()} == {number}
            admin_events = everything.delivered_events()
            assert all(r.verifies_with(admin["secret"]) for r in everything.delivered())
            assert {e["type"] for e in admin_events} == {"invoice.created"}
            assert {foreign, number} <= {e["invoiceNumber"] for e in admin_events}


async def test_a_subscriber_answering_500_for_a_while_gets_every_event_later_in_order(hooks):
    receiver = Receiver(failures=4)
    with receiving(receiver) as url:
        sub = await subscribe(hooks, url)
        number = await new_invoice(hooks)
        for action in ("publish", "send"):
            done = await hooks.post(f"/v1/invoices/{number}/{action}", headers=key())
            assert done.status_code == 200, done.text

        await until(lambda: len(receiver.delivered()) >= 3, what="three events delivered")
        seen = [r.event["id"] for r in receiver.snapshot()]
        assert seen == sorted(seen), "an event went out before an older one was delivered"
        delivered = receiver.delivered_events()
        assert [e["type"] for e in delivered] == [
            "invoice.created",
            "invoice.published",
            "invoice.sent",
        ]
        assert all(r.verifies_with(sub["secret"]) for r in receiver.snapshot())
        # Every attempt of one event carries the same webhook-id: receivers de-duplicate on it.
        first_id = delivered[0]["id"]
        assert {r.headers["webhook-id"] for r in receiver.snapshot()[:5]} == {f"evt_{first_id}"}

        async def recorded() -> list[dict[str, Any]] | None:
            # The receiver answered; the relay writes outcomes in batches a moment later.
            listed = await deliveries(hooks, sub["id"])
            return listed if [d["state"] for d in listed] == ["succeeded"] * 3 else None

        listed = await until(recorded, what="three deliveries recorded as succeeded")
        first = next(d for d in listed if d["eventId"] == first_id)
        assert first["attempts"] == 5 and first["webhookId"] == f"evt_{first_id}"
        assert [a["statusCode"] for a in first["attemptLog"]] == [500, 500, 500, 500, 200]
        assert all(a["latencyMs"] is not None for a in first["attemptLog"])
        assert len(first["attemptLog"][0]["responseBodyPrefix"]) <= 256
        assert first["attemptLog"][0]["responseBodyPrefix"].startswith("not now")


async def test_rotation_keeps_deliveries_verifiable_by_old_and_new_secret_during_the_grace(hooks):
    receiver = Receiver()
    with receiving(receiver) as url:
        sub = await subscribe(hooks, url, eventTypes=["invoice.created"])
        old = sub["secret"]
        rotated = await hooks.post(
            f"/v1/subscriptions/{sub['id']}/rotate-secret",
            headers=key(),
            json={"gracePeriodSeconds": 600},
        )
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new.startswith("whsec_") and new != old
        assert rotated.json()["previousSecretExpiresAt"] is not None

        await new_invoice(hooks)
        await until(lambda: len(receiver.delivered()) == 1, what="a delivery in the grace period")
        during = receiver.delivered()[0]
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        assert during.verifies_with(old) and during.verifies_with(new)

        ended = await hooks.post(
            f"/v1/subscriptions/{sub['id']}/rotate-secret",
            headers=key(),
            json={"gracePeriodSeconds": 0},
        )
        newest = ended.json()["secret"]
        await new_invoice(hooks)
        await until(lambda: len(receiver.delivered()) == 2, what="a delivery after the grace")
        after = receiver.delivered()[1]
        assert after.verifies_with(newest)
        assert not after.verifies_with(new) and not after.verifies_with(old)


async def test_a_ping_goes_out_once_and_is_no_feed_event(hooks):
    receiver = Receiver()
    with receiving(receiver) as url:
        sub = await subscribe(hooks, url)
        before = len(await feed(hooks))
        ping = await hooks.post(f"/v1/subscriptions/{sub['id']}/test", headers=key())
        assert ping.status_code == 202, ping.text
        assert ping.json()["kind"] == "ping" and ping.json()["eventType"] == "ping"
        await until(lambda: receiver.delivered(), what="the ping")
        received = receiver.delivered()[0]
        assert received.verifies_with(sub["secret"])
        assert received.event["type"] == "ping" and received.event["subscriptionId"] == sub["id"]
        assert received.headers["webhook-id"] == f"ping_{ping.json()['id']}"
        assert len(await feed(hooks)) == before


async def test_a_subscriber_that_never_recovers_shows_failed_deliveries_and_is_disabled(
    simulator_url, stack
):
    dead, healthy = Receiver(always_fail=True), Receiver()
    with (
        facade(simulator_url, subscription_retry_window_seconds=1.0) as url,
        receiving(dead) as dead_url,
        receiving(healthy) as healthy_url,
    ):
        hooks = await stack.enter_async_context(client(url, "hooks"))
        sub = await subscribe(hooks, dead_url, eventTypes=["invoice.created"])
        watcher = await subscribe(hooks, healthy_url, eventTypes=["subscription.disabled"])
        await new_invoice(hooks)

        async def disabled() -> dict[str, Any] | None:
            body = (await hooks.get(f"/v1/subscriptions/{sub['id']}")).json()
            return None if body["enabled"] else body

        shown = await until(disabled, what="the dead subscription disabled")
        assert "failed every delivery attempt" in shown["disabledReason"]
        [failed] = await deliveries(hooks, sub["id"])
        assert failed["state"] == "failed" and failed["attempts"] >= 2
        assert failed["lastError"]["kind"] == "exhausted"
        assert {a["statusCode"] for a in failed["attemptLog"]} == {500}
        assert len(dead.snapshot()) == failed["attempts"]

        # The feed says so, and so does a push to the owner's other subscription.
        notices = [e for e in await feed(hooks) if e["type"] == "subscription.disabled"]
        assert len(notices) == 1 and notices[0]["invoiceNumber"] is None
        assert notices[0]["data"]["subscriptionId"] == sub["id"]
        await until(lambda: healthy.delivered(), what="the notice pushed")
        assert healthy.delivered()[0].event == notices[0]
        assert healthy.delivered()[0].verifies_with(watcher["secret"])

        # While disabled nothing is queued for it; enabled again, a retry delivers the failed one.
        await new_invoice(hooks)
        assert len(await deliveries(hooks, sub["id"])) == 1
        refused = await hooks.post(
            f"/v1/subscriptions/{sub['id']}/deliveries/{failed['id']}/retry", headers=key()
        )
        assert refused.status_code == 409
        dead.always_fail = False
        enabled = await hooks.patch(
            f"/v1/subscriptions/{sub['id']}", headers=key(), json={"enabled": True}
        )
        assert enabled.json()["enabled"] is True and enabled.json()["disabledReason"] is None
        retried = await hooks.post(
            f"/v1/subscriptions/{sub['id']}/deliveries/{failed['id']}/retry", headers=key()
        )
        assert retried.status_code == 202, retried.text
        await until(lambda: dead.delivered(), what="the failed delivery re-driven")
        assert dead.delivered()[0].verifies_with(sub["secret"])


async def test_a_forbidden_url_is_refused_at_creation_and_at_delivery(simulator_url):
    """Strict policy: the API allows 127.0.0.1 (on its allow-list); the relay, whose allow-list no
    longer has it (an operator took it off), refuses the address when it delivers."""
    receiver = Receiver()
    strict = dict(subscription_url_policy="strict", relay_in_process=False)
    with fresh_database() as db, receiving(receiver) as hook_url:
        api_settings = push_settings(
            db, simulator_url, subscription_allowed_hosts="127.0.0.1", **strict
        )
        relay_settings = push_settings(db, simulator_url, **strict)
        with serve(create_app(api_settings)) as url:
            async with client(url, "hooks") as hooks:
                for bad in (
                    "http://169.254.169.254/latest/meta-data/",  # plain http, not allowed
                    "https://169.254.169.254/latest/meta-data/",  # the metadata endpoint
                    "https://[::1]:8443/hook",  # loopback
                    "https://10.0.0.7/hook",  # a private address
                    "https://localhost/hook",  # this machine, whatever DNS says
                    "https://user:secret@hooks.example.com/hook",  # credentials in the URL
                    "ftp://hooks.example.com/hook",
                ):
                    refused = await hooks.post(
                        "/v1/subscriptions", headers=key(), json={"url": bad}
                    )
                    assert refused.status_code == 422, (bad, refused.text)
                    assert refused.json()["errors"][0]["field"] == "url"
                assert (await hooks.get("/v1/subscriptions")).json()["items"] == []

                # https: what the relay refuses is the address (it never connects, so the receiver's
                # plain http does not matter).
                sub = await subscribe(hooks, hook_url.replace("http://", "https://"))
                async with relay_running(relay_settings):
                    await new_invoice(hooks)
                    shown = await until(
                        disabled(hooks, sub["id"]), what="the subscription refused at delivery"
                    )
                assert "loopback" in shown["disabledReason"]
                [refused_delivery] = await deliveries(hooks, sub["id"])
                assert refused_delivery["state"] == "failed"
                assert refused_delivery["attempts"] == 1
                assert refused_delivery["lastError"]["kind"] == "forbidden_target"
                assert receiver.snapshot() == []  # nothing ever reached the address


def disabled(api: httpx.AsyncClient, subscription_id: str) -> Any:
    async def probe() -> dict[str, Any] | None:
        body = (await api.get(f"/v1/subscriptions/{subscription_id}")).json()
        return None if body["enabled"] else body

    return probe


@asynccontextmanager
async def relay_running(settings: Any) -> AsyncIterator[None]:
    """`invoicing-gateway relay`'s jobs in this process, with settings of their own."""
    database = Database.from_settings(settings)
    clients = CybersourceClients.from_settings(settings)
    stop = asyncio.Event()
    jobs = asyncio.create_task(run_background_jobs(database, settings, clients, stop))
    try:
        yield
    finally:
        stop.set()
        await jobs
        await clients.aclose()
        await database.dispose()


async def test_a_subscription_stops_when_its_owner_is_no_longer_a_caller(simulator_url):
    """The relay knows the callers from its settings: a key taken out stops its subscriptions."""
    receiver = Receiver()
    with fresh_database() as db, receiving(receiver) as hook_url:
        api_settings = push_settings(db, simulator_url, relay_in_process=False)
        without_hooks = json.dumps([k for k in json.loads(api_keys()) if k["client"] != "hooks"])
        relay_settings = push_settings(
            db, simulator_url, relay_in_process=False, api_keys=without_hooks
        )
        with serve(create_app(api_settings)) as url:
            async with client(url, "hooks") as hooks:
                sub = await subscribe(hooks, hook_url)
                async with relay_running(relay_settings):
                    await new_invoice(hooks)
                    shown = await until(disabled(hooks, sub["id"]), what="the owner's stop")
                assert "no longer a configured caller" in shown["disabledReason"]
                [refused] = await deliveries(hooks, sub["id"])
                assert refused["state"] == "failed"
                assert refused["lastError"]["kind"] == "owner_revoked"
                assert receiver.snapshot() == []
