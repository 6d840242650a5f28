"""Issue 9 in the simulator: the `email_fails` fault reproduces Cybersource's 202 ACCEPTED,
reminders are sent through an admin route with their webhook, and every signed request is kept as
received."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from app.cybersource.client import CybersourceClient
from tests.simulator.helpers import RawClient, load_sample, schema_errors
from tests.simulator.test_lifecycle import invoice_body, make_client, stored
from tests.simulator.test_pending_payments import event_types


@pytest.fixture
async def client(raw: RawClient) -> AsyncIterator[CybersourceClient]:
    async with make_client(raw.base_url) as c:
        yield c


async def test_the_email_fails_fault_answers_the_documented_202(
    client: CybersourceClient, raw: RawClient
) -> None:
    reply = await raw.admin(
        "POST",
        "/__sim/faults",
        {"action": "email_fails", "method": "POST", "path": "/invoicing/v2/invoices", "times": 1},
    )
    assert reply.status == 201, reply.json()
    accepted = await client.create_invoice(invoice_body(send=True, mode="email"))
    assert accepted.http_status == 202 and accepted.accepted_without_email
    sample = load_sample("spec.create-invoice.202.response.json")["body"]
    assert set(accepted.raw) == set(sample)
    assert accepted.raw["status"] == accepted.raw["reason"] == "ACCEPTED"
    assert schema_errors("createInvoice", 202, accepted.raw) == []
    invoice_id = accepted.raw["message"].split()[2]
    # Stored and published, not e-mailed: a send afterwards e-mails it.
    assert (await stored(raw, invoice_id))["status"] == "CREATED"
    assert await event_types(raw, invoice_id) == []
    sent = await client.send_invoice(invoice_id)
    assert sent.status == "SENT"
    # The rule fired once: the next create is e-mailed as usual.
    assert (await client.create_invoice(invoice_body(send=True))).status == "SENT"


@pytest.mark.parametrize(
    ("overdue", "event"),
    [
        (False, "invoicing.customer.invoice.reminder"),
        (True, "invoicing.customer.invoice.overdue-reminder"),
    ],
)
async def test_a_reminder_is_an_email_a_history_entry_and_a_webhook(
    client: CybersourceClient, raw: RawClient, overdue: bool, event: str
) -> None:
    invoice_id = str((await client.create_invoice(invoice_body(send=True))).id)
    reply = await raw.admin("POST", f"/__sim/invoices/{invoice_id}/reminders", {"overdue": overdue})
    assert reply.status == 200, reply.json()
    assert reply.json()["webhooks"]
    assert await event_types(raw, invoice_id) == ["invoicing.customer.invoice.send", event]
    invoice = await client.get_invoice(invoice_id)
    assert invoice.raw["invoiceHistory"][0]["event"] == "REMINDER"
    assert invoice.status == "SENT"


async def test_no_reminder_for_a_draft(client: CybersourceClient, raw: RawClient) -> None:
    invoice_id = str((await client.create_invoice(invoice_body())).id)
    reply = await raw.admin("POST", f"/__sim/invoices/{invoice_id}/reminders", {})
    assert reply.status == 409 and reply.json()["error"] == "NOT_REMINDABLE"


async def test_requests_are_kept_as_received(client: CybersourceClient, raw: RawClient) -> None:
    body = invoice_body(number="KEPT1")
    await client.create_invoice(body)
    reply = await raw.admin("GET", "/__sim/requests?method=POST&path=/invoicing/v2/invoices")
    received = reply.json()
    assert [json.loads(r["body"]) for r in received][-1] == body
