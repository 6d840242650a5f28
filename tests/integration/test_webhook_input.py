"""Issue 9, what Cybersource's notifications bring: a reminder is an `invoice.reminder_sent` event
(once per notification), and no notification body is a 500. One nested 100,000 deep is refused
before it is parsed (401 unsigned, else 400 malformed_json, or 413 beyond the size limit); a validly
signed one whose fields have the wrong JSON type is a 422 naming the field."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import (
    LOCAL_KEY_ID,
    LOCAL_MERCHANT_ID,
    LOCAL_SHARED_SECRET,
    LOCAL_WEBHOOK_KEY_ID,
    LOCAL_WEBHOOK_SECRET,
)
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig, WebhookConfig
from app.simulator.webhooks import (
    build_envelope,
    compact,
    signature_header,
    webhook_signature,
)
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.integration.waiting import until
from tests.support.postgres import fresh_database
from tests.support.servers import free_port, serve

WEBHOOKS = "/v1/webhooks/cybersource"
REMINDER = "invoicing.customer.invoice.reminder"
OVERDUE_REMINDER = "invoicing.customer.invoice.overdue-reminder"


def signed(body: bytes | dict[str, Any], *, member: str | None = "payload") -> tuple[bytes, dict]:
    """`body` signed as Cybersource does: `t.compact(payload)`, or `t.raw body` (member None)."""
    raw = body if isinstance(body, bytes) else compact(body).encode()
    message = raw.decode() if member is None else compact(json.loads(raw)[member])
    t = int(time.time() * 1000)
    sig = webhook_signature(LOCAL_WEBHOOK_SECRET, t, message)
    headers = {
        "v-c-signature": signature_header(t, LOCAL_WEBHOOK_KEY_ID, sig),
        "Content-Type": "application/json",
    }
    return raw, headers


def notification(data: dict[str, Any], event_type: str = REMINDER) -> dict[str, Any]:
    return build_envelope(
        shape="payload",
        event_type=event_type,
        webhook_id="w-1",
        organization_id=LOCAL_MERCHANT_ID,
        event_date="2026-12-01T10:00:00",
        trace_id="t-1",
        retry_number=0,
        request_type="NEW",
        data={"eventType": event_type, "organizationID": LOCAL_MERCHANT_ID, **data},
        notification_id="n-1",
    )


async def events_of(api: httpx.AsyncClient, number: str) -> list[dict[str, Any]]:
    page = (await api.get("/v1/events", params={"limit": 200})).json()
    return [e for e in page["items"] if e["invoiceNumber"] == number]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]]:
    """A facade and a simulator that sends it its signed notifications, over real HTTP."""
    sim_port = free_port()
    with fresh_database() as db:
        settings = facade_settings(db, f"http://127.0.0.1:{sim_port}", reconcile_after_seconds=0)
        with serve(create_app(settings)) as facade_url:
            config = SimulatorConfig(
                merchants=(
                    MerchantConfig(
                        merchant_id=LOCAL_MERCHANT_ID,
                        key_id=LOCAL_KEY_ID,
                        shared_secret=LOCAL_SHARED_SECRET,
                    ),
                ),
                webhook=WebhookConfig(
                    url=f"{facade_url}{WEBHOOKS}",
                    key_id=LOCAL_WEBHOOK_KEY_ID,
                    secret=LOCAL_WEBHOOK_SECRET,
                    retry_delays=(0.2, 0.5),
                ),
                log_requests=False,
            )
            with serve(
                create_simulator_app(config), ready_path="/__sim/faults", port=sim_port
            ) as sim_url:
                async with (
                    client_for(facade_url) as api,
                    httpx.AsyncClient(base_url=sim_url, timeout=10) as sim,
                    httpx.AsyncClient(base_url=facade_url, timeout=30) as cybersource,
                ):
                    yield api, sim, cybersource


async def test_a_reminder_notification_is_one_reminder_sent_event(pair):
    api, sim, cybersource = pair
    created = await api.post("/v1/invoices", headers=key(), json=invoice_body(sendImmediately=True))
    assert created.status_code == 201, created.text
    number = created.json()["invoiceNumber"]

    for overdue in (False, True):
        reminded = await sim.post(f"/__sim/invoices/{number}/reminders", json={"overdue": overdue})
        assert reminded.status_code == 200, reminded.text

    async def reminders() -> list[dict[str, Any]]:
        found = [e for e in await events_of(api, number) if e["type"] == "invoice.reminder_sent"]
        return found if len(found) == 2 else []

    found = await until(reminders)
    assert [e["data"]["overdue"] for e in found] == [False, True]
    assert found[0]["data"]["status"] == "SENT"
    # A reminder changes no status: nothing else happened.
    assert [e["type"] for e in await events_of(api, number)] == [
        "invoice.created",
        "invoice.reminder_sent",
        "invoice.reminder_sent",
    ]
    deliveries = [
        d for d in (await sim.get("/__sim/webhooks")).json() if d["invoiceNumber"] == number
    ]
    assert [(d["eventType"], d["outcome"]) for d in deliveries][-2:] == [
        (REMINDER, "delivered"),
        (OVERDUE_REMINDER, "delivered"),
    ]

    # Cybersource's retry of the same notification (re-signed with a fresh t) is the same
    # notification: no second event.
    first = deliveries[-2]
    envelope = build_envelope(
        shape="payload",
        event_type=first["eventType"],
        webhook_id="another-webhook",
        organization_id=first["organizationId"],
        event_date=first["eventDate"],
        trace_id="another-trace",
        retry_number=1,
        request_type="RETRY",
        data=first["data"],
        notification_id=first["deliveryId"],
    )
    body, headers = signed(envelope)
    again = await cybersource.post(WEBHOOKS, content=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "duplicate"
    types = [e["type"] for e in await events_of(api, number)]
    assert types.count("invoice.reminder_sent") == 2


async def test_a_reminder_for_an_invoice_the_facade_does_not_know_is_no_event(pair):
    api, _, cybersource = pair
    body, headers = signed(notification({"invoiceNumber": "NOT-OURS-1"}))
    answer = await cybersource.post(WEBHOOKS, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["action"] == "unknown invoice"
    assert await events_of(api, "NOT-OURS-1") == []


def _nested(depth: int) -> bytes:
    return b'{"payload": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("depth", "limit", "signed_as", "status", "code"),
    [
        # Within the default 64 KiB: refused by the reader's depth check once the header checks
        # out; without a valid header it is not even read.
        (30_000, None, "raw", 400, "malformed_json"),
        (30_000, None, None, 401, "unauthenticated"),
        # 100,000 deep, with a limit that lets it through the edge, and with the default one.
        (100_000, 300_000, "raw", 400, "malformed_json"),
        (100_000, 300_000, None, 401, "unauthenticated"),
        (100_000, None, "raw", 413, "body_too_large"),
    ],
)
async def test_a_deeply_nested_body_is_a_problem_never_a_500(
    database_url: str,
    simulator_url: str,
    depth: int,
    limit: int | None,
    signed_as: str | None,
    status: int,
    code: str,
):
    overrides = {} if limit is None else {"webhook_max_body_bytes": limit}
    settings = facade_settings(database_url, simulator_url, **overrides)
    raw = _nested(depth)
    if signed_as is None:
        headers = {"v-c-signature": "t=1;keyId=x;sig=AAAA", "Content-Type": "application/json"}
    else:
        raw, headers = signed(raw, member=None)
    with serve(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as cybersource:
            answer = await cybersource.post(WEBHOOKS, content=raw, headers=headers)
            assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            # The server is fine afterwards.
            assert (await cybersource.get(WEBHOOKS)).status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("invoiceNumber", 12345),
        ("invoiceNumber", 1.5),
        ("invoiceNumber", ["INV-1"]),
        ("invoiceNumber", {"id": "INV-1"}),
        ("invoiceNumber", True),
        ("eventType", ["invoicing.customer.invoice.paid"]),
        ("organizationID", {"id": LOCAL_MERCHANT_ID}),
    ],
)
async def test_a_signed_notification_with_a_field_of_the_wrong_type_is_422(
    facade_url: str, field: str, value: Any
):
    envelope = notification({"invoiceNumber": "INV00000001", field: value})
    if field == "eventType":
        del envelope["eventType"]  # only the signed data names it
    body, headers = signed(envelope)
    async with httpx.AsyncClient(base_url=facade_url, timeout=30) as cybersource:
        answer = await cybersource.post(WEBHOOKS, content=body, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (422, "validation_failed"), answer.text
    assert answer.json()["errors"][0]["field"] == f"payload.data.{field}"


async def test_a_signed_notification_with_nan_is_malformed_json(facade_url: str):
    body, headers = signed(
        compact(notification({"invoiceNumber": "INV00000001"}))
        .replace('"retryNumber":0', '"retryNumber":NaN')
        .encode(),
        member=None,
    )
    async with httpx.AsyncClient(base_url=facade_url, timeout=30) as cybersource:
        answer = await cybersource.post(WEBHOOKS, content=body, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (400, "malformed_json"), answer.text
