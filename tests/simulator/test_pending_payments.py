"""PENDING: a payment waiting for a decision (e.g. a review), put in and decided through the admin
routes, observed through the project's own `CybersourceClient` over real HTTP. Every signed answer
is checked against the spec's response schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from app.cybersource.client import CybersourceClient
from app.cybersource.errors import RejectedError
from app.cybersource.models import InvoiceResponse
from tests.simulator.helpers import MERCHANT_B, RawClient, Receiver, schema_errors, until
from tests.simulator.test_lifecycle import invoice_body, make_client, stored

PAID_EVENT = "invoicing.customer.invoice.paid"
PARTIAL_EVENT = "invoicing.customer.invoice.partial-payment"


@pytest.fixture
async def client(raw: RawClient) -> AsyncIterator[CybersourceClient]:
    async with make_client(raw.base_url) as c:
        yield c


def valid(operation_id: str, result: InvoiceResponse) -> InvoiceResponse:
    assert result.http_status is not None
    assert schema_errors(operation_id, result.http_status, result.raw) == []
    return result


async def refused(operation_id: str, call: Awaitable[Any]) -> RejectedError:
    with pytest.raises(RejectedError) as caught:
        await call
    error = caught.value
    assert error.status is not None and schema_errors(operation_id, error.status, error.body) == []
    return error


async def pay(raw: RawClient, invoice_id: str, amount: str, **extra: Any) -> Any:
    return await raw.admin(
        "POST", f"/__sim/invoices/{invoice_id}/payments", {"amount": amount, **extra}
    )


async def decide(raw: RawClient, invoice_id: str, body: Any) -> Any:
    return await raw.admin("POST", f"/__sim/invoices/{invoice_id}/payments/pending", body)


async def sent_invoice(client: CybersourceClient, *, send: bool = True, mode: str = "email") -> str:
    created = valid(
        "createInvoice", await client.create_invoice(invoice_body(send=send, mode=mode))
    )
    return str(created.id)


async def pending_invoice(
    client: CybersourceClient, raw: RawClient, amount: str = "100.00", *, state: str = "SENT"
) -> str:
    if state == "CREATED":
        invoice_id = await sent_invoice(client, mode="none")
        assert (await stored(raw, invoice_id))["status"] == "CREATED"
    else:
        invoice_id = await sent_invoice(client)
    reply = await pay(raw, invoice_id, amount, review=True)
    assert reply.status == 200, reply.json()
    data = reply.json()
    assert data["status"] == "PENDING" and data["webhooks"] == []
    assert data["invoiceHistory"][0]["event"] == "PENDING"
    return invoice_id


async def deliveries(raw: RawClient, invoice_id: str) -> list[dict[str, Any]]:
    reply = await raw.admin("GET", f"/__sim/webhooks?invoiceNumber={invoice_id}")
    assert reply.status == 200
    items: list[dict[str, Any]] = reply.json()
    return items


async def event_types(raw: RawClient, invoice_id: str) -> list[str]:
    return [d["eventType"] for d in await deliveries(raw, invoice_id)]


# --- putting an invoice in PENDING ----------------------------------------------------------------


async def test_a_reviewed_payment_leaves_the_invoice_pending(
    client: CybersourceClient, raw: RawClient
) -> None:
    invoice_id = await pending_invoice(client, raw, "100.00")
    invoice = valid("getInvoice", await client.get_invoice(invoice_id))
    assert invoice.status == "PENDING"
    assert invoice.raw["orderInformation"]["amountDetails"]["balanceAmount"] == "100.00"
    assert set(invoice.raw["_links"]) == {"self"}  # no action is allowed while pending
    history = invoice.raw["invoiceHistory"]
    assert [h["event"] for h in history] == ["PENDING", "SEND", "CREATE"]
    details = history[0]["transactionDetails"]
    assert details["amount"] == "100.00" and details["transactionId"].isdigit()
    admin = await stored(raw, invoice_id)
    assert admin["paidAmount"] == "0" and admin["balanceAmount"] == "100.00"
    assert await event_types(raw, invoice_id) == [
        "invoicing.customer.invoice.send"
    ]  # none for PENDING


@pytest.mark.parametrize("action", ["update", "cancel", "send", "publish"])
async def test_no_api_action_is_allowed_while_pending(
    client: CybersourceClient, raw: RawClient, action: str
) -> None:
    invoice_id = await pending_invoice(client, raw)
    calls: dict[str, tuple[str, Callable[[], Awaitable[Any]]]] = {
        "update": (
            "updateInvoice",
            lambda: client.update_invoice(invoice_id, invoice_body(total="50.00")),
        ),
        "cancel": ("performCancelAction", lambda: client.cancel_invoice(invoice_id)),
        "send": ("performSendAction", lambda: client.send_invoice(invoice_id)),
        "publish": ("performPublishAction", lambda: client.publish_invoice(invoice_id)),
    }
    operation_id, call = calls[action]
    error = await refused(operation_id, call())
    assert error.status == 400 and error.is_action_not_allowed
    assert error.body["message"] == "Requested action is not allowed."
    after = await stored(raw, invoice_id)
    assert after["status"] == "PENDING" and after["invoiceHistory"][0]["event"] == "PENDING"
    assert after["content"]["orderInformation"]["amountDetails"]["totalAmount"] == "100.00"
    assert after["sendCount"] == 1 and after["resendCount"] == 0


@pytest.mark.parametrize("review", [False, True])
async def test_a_second_payment_while_pending_is_refused(
    client: CybersourceClient, raw: RawClient, review: bool
) -> None:
    invoice_id = await pending_invoice(client, raw, "40.00")
    reply = await pay(raw, invoice_id, "60.00", review=review)
    assert reply.status == 409 and reply.json()["error"] == "NOT_PAYABLE"
    after = await stored(raw, invoice_id)
    assert after["status"] == "PENDING" and after["paidAmount"] == "0"
    assert [h["event"] for h in after["invoiceHistory"]].count("PENDING") == 1


async def test_a_reviewed_payment_gets_the_same_checks(
    client: CybersourceClient, raw: RawClient
) -> None:
    invoice_id = await sent_invoice(client)
    over = await pay(raw, invoice_id, "100.01", review=True)
    assert over.status == 422 and over.json()["error"] == "PAYMENT_REFUSED"
    below = await pay(raw, invoice_id, "5.00", review=True)
    assert below.status == 422 and below.json()["error"] == "PAYMENT_REFUSED"
    draft = await sent_invoice(client, send=False)
    reply = await pay(raw, draft, "100.00", review=True)
    assert reply.status == 409 and reply.json()["error"] == "NOT_PAYABLE"
    for checked in (invoice_id, draft):
        assert (await stored(raw, checked))["invoiceHistory"][0]["event"] not in {
            "PENDING",
            "PAYMENT",
        }


@pytest.mark.parametrize("review", ["yes", 1, None, [], {"x": True}])
async def test_review_must_be_a_bool(
    client: CybersourceClient, raw: RawClient, review: Any
) -> None:
    invoice_id = await sent_invoice(client)
    reply = await pay(raw, invoice_id, "100.00", review=review)
    assert reply.status == 422 and reply.json()["error"] == "INVALID_REVIEW"
    assert (await stored(raw, invoice_id))["status"] == "SENT"


async def test_review_false_is_a_normal_payment(client: CybersourceClient, raw: RawClient) -> None:
    invoice_id = await sent_invoice(client)
    reply = await pay(raw, invoice_id, "100.00", review=False)
    assert reply.status == 200 and reply.json()["status"] == "PAID"


async def test_the_list_filter_still_refuses_pending(
    client: CybersourceClient, raw: RawClient
) -> None:
    await pending_invoice(client, raw)
    for status in ("PENDING", "pending"):
        with pytest.raises(RejectedError) as caught:
            await client.list_invoices(offset=0, limit=10, status=status)
        error = caught.value
        assert error.status == 400 and error.reason == "VALIDATION_ERROR"
        assert {(d["field"], d["reason"]) for d in error.body["details"]} == {
            ("status", "INVALID_DATA")
        }
        assert schema_errors("getAllInvoices", 400, error.body) == []
    listed = await client.list_invoices(offset=0, limit=10)
    assert schema_errors("getAllInvoices", 200, listed.raw) == []
    assert [i["status"] for i in listed.raw["invoices"]] == ["PENDING"]


# --- deciding -------------------------------------------------------------------------------------


async def test_accept_pays_the_invoice_with_the_paid_webhook(
    client: CybersourceClient, raw: RawClient, receiver: Receiver
) -> None:
    invoice_id = await pending_invoice(client, raw, "100.00")
    reply = await decide(raw, invoice_id, {"decision": "accept"})
    assert reply.status == 200
    data = reply.json()
    assert (
        data["status"] == "PAID" and data["balanceAmount"] == "0.00" and len(data["webhooks"]) == 1
    )
    invoice = valid("getInvoice", await client.get_invoice(invoice_id))
    assert invoice.status == "PAID"
    assert invoice.raw["orderInformation"]["amountDetails"]["balanceAmount"] == "0.00"
    history = invoice.raw["invoiceHistory"]
    assert [h["event"] for h in history] == ["PAYMENT", "PENDING", "SEND", "CREATE"]
    assert (
        history[0]["transactionDetails"] == history[1]["transactionDetails"]
    )  # the same transaction
    assert history[0]["transactionDetails"]["amount"] == "100.00"
    logged = await deliveries(raw, invoice_id)
    assert [d["eventType"] for d in logged] == ["invoicing.customer.invoice.send", PAID_EVENT]
    assert logged[-1]["deliveryId"] == data["webhooks"][0]
    await until(
        lambda: any(r["headers"]["v-c-event-type"] == PAID_EVENT for r in receiver.received)
    )
    # Decided once: a second decision finds nothing pending.
    again = await decide(raw, invoice_id, {"decision": "accept"})
    assert again.status == 409 and again.json()["error"] == "NOT_PENDING"


async def test_accepting_a_partial_amount_makes_it_partial(
    client: CybersourceClient, raw: RawClient
) -> None:
    invoice_id = await pending_invoice(client, raw, "40.00")  # invoice_body allows partial payments
    reply = await decide(raw, invoice_id, {"decision": "accept"})
    assert reply.status == 200 and reply.json()["status"] == "PARTIAL"
    assert reply.json()["balanceAmount"] == "60.00" and reply.json()["paidAmount"] == "40.00"
    invoice = valid("getInvoice", await client.get_invoice(invoice_id))
    assert invoice.status == "PARTIAL"
    assert invoice.raw["orderInformation"]["amountDetails"]["balanceAmount"] == "60.00"
    assert [h["event"] for h in invoice.raw["invoiceHistory"]][:2] == ["PAYMENT", "PENDING"]
    assert await event_types(raw, invoice_id) == ["invoicing.customer.invoice.send", PARTIAL_EVENT]
    # PARTIAL again allows the usual actions and payments, including another reviewed one.
    valid("performSendAction", await client.send_invoice(invoice_id))
    assert (await pay(raw, invoice_id, "60.00", review=True)).json()["status"] == "PENDING"
    rejected = await decide(raw, invoice_id, {"decision": "reject"})
    assert rejected.json()["status"] == "PARTIAL" and rejected.json()["balanceAmount"] == "60.00"


@pytest.mark.parametrize("state", ["SENT", "CREATED"])
async def test_reject_puts_the_invoice_back_without_a_webhook(
    client: CybersourceClient, raw: RawClient, state: str
) -> None:
    invoice_id = await pending_invoice(client, raw, "100.00", state=state)
    events_before = await event_types(raw, invoice_id)
    reply = await decide(raw, invoice_id, {"decision": "reject"})
    assert reply.status == 200
    data = reply.json()
    assert data["status"] == state and data["webhooks"] == []
    assert data["balanceAmount"] == "100.00" and data["paidAmount"] == "0"
    invoice = valid("getInvoice", await client.get_invoice(invoice_id))
    assert invoice.status == state
    assert invoice.raw["orderInformation"]["amountDetails"]["balanceAmount"] == "100.00"
    assert "paymentLink" in invoice.raw["invoiceInformation"] and "cancel" in invoice.raw["_links"]
    events = [h["event"] for h in invoice.raw["invoiceHistory"]]
    assert events[:2] == ["REJECTED", "PENDING"] and "PAYMENT" not in events
    assert await event_types(raw, invoice_id) == events_before  # nothing emitted for a rejection
    # Back in its old status, the invoice may be paid again (and updated, canceled as before).
    paid = await pay(raw, invoice_id, "100.00")
    assert paid.status == 200 and paid.json()["status"] == "PAID"


async def test_cancel_is_allowed_again_after_a_rejection(
    client: CybersourceClient, raw: RawClient
) -> None:
    invoice_id = await pending_invoice(client, raw)
    assert (await decide(raw, invoice_id, {"decision": "reject"})).status == 200
    canceled = valid("performCancelAction", await client.cancel_invoice(invoice_id))
    assert canceled.status == "CANCELED"


@pytest.mark.parametrize("state", ["DRAFT", "SENT", "PAID"])
async def test_deciding_an_invoice_that_is_not_pending_is_409(
    client: CybersourceClient, raw: RawClient, state: str
) -> None:
    invoice_id = await sent_invoice(client, send=state != "DRAFT")
    if state == "PAID":
        assert (await pay(raw, invoice_id, "100.00")).status == 200
    for decision in ("accept", "reject"):
        reply = await decide(raw, invoice_id, {"decision": decision})
        assert reply.status == 409 and reply.json()["error"] == "NOT_PENDING"
    assert (await stored(raw, invoice_id))["status"] == state


async def test_deciding_an_unknown_invoice_or_merchant_is_404(
    client: CybersourceClient, raw: RawClient
) -> None:
    reply = await decide(raw, "nope", {"decision": "accept"})
    assert reply.status == 404 and reply.json()["error"] == "NOT_FOUND"
    invoice_id = await pending_invoice(client, raw)
    other = await decide(
        raw, invoice_id, {"decision": "accept", "merchantId": MERCHANT_B.merchant_id}
    )
    assert other.status == 404 and other.json()["error"] == "NOT_FOUND"  # A's invoice, B's book
    unknown = await decide(raw, invoice_id, {"decision": "accept", "merchantId": "nobody"})
    assert unknown.status == 404 and unknown.json()["error"] == "UNKNOWN_MERCHANT"
    assert (await stored(raw, invoice_id))["status"] == "PENDING"


@pytest.mark.parametrize(
    ("raw_body", "status", "error"),
    [
        (b"not json", 400, "BAD_JSON"),
        (b"[]", 400, "BAD_JSON"),
        (b"", 422, "INVALID_DECISION"),
        (b"{}", 422, "INVALID_DECISION"),
        (b'{"decision": "ACCEPT"}', 422, "INVALID_DECISION"),
        (b'{"decision": "maybe"}', 422, "INVALID_DECISION"),
        (b'{"decision": true}', 422, "INVALID_DECISION"),
    ],
)
async def test_a_bad_decision_body_is_refused(
    client: CybersourceClient, raw: RawClient, raw_body: bytes, status: int, error: str
) -> None:
    invoice_id = await pending_invoice(client, raw)
    reply = await raw.send(
        "POST",
        f"/__sim/invoices/{invoice_id}/payments/pending",
        raw_body,
        {"Content-Type": "application/json"},
    )
    assert reply.status == status and reply.json()["error"] == error
    assert (await stored(raw, invoice_id))["status"] == "PENDING"
