"""Every lifecycle transition of README "Status lifecycle", allowed and refused, through the
project's own `CybersourceClient` over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from app.cybersource.client import CybersourceClient
from app.cybersource.errors import RejectedError
from app.cybersource.transport import Timeouts
from app.settings import MerchantProfile
from app.simulator import MerchantConfig
from tests.simulator.helpers import MERCHANT_A, MERCHANT_B, RawClient, Receiver, until


def make_client(
    base_url: str, merchant: MerchantConfig = MERCHANT_A, *, read: float = 5.0
) -> CybersourceClient:
    profile = MerchantProfile(
        name="default",
        merchant_id=merchant.merchant_id,
        key_id=merchant.key_id,
        shared_secret=SecretStr(merchant.shared_secret),
        base_url=base_url,
    )
    return CybersourceClient(profile, timeouts=Timeouts(connect=2.0, read=read, total=read + 5))


@pytest.fixture
async def client(raw: RawClient) -> AsyncIterator[CybersourceClient]:
    async with make_client(raw.base_url) as c:
        yield c


def invoice_body(
    *,
    send: bool = False,
    mode: str = "email",
    email: str | None = "payer@example.com",
    partial: bool = True,
    number: str | None = None,
    total: str = "100.00",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customerInformation": {"name": "Pat Payer"},
        "invoiceInformation": {
            "description": "Consulting",
            "dueDate": "2026-12-31",
            "sendImmediately": send,
            "allowPartialPayments": partial,
            "deliveryMode": mode,
        },
        "orderInformation": {
            "amountDetails": {
                "totalAmount": total,
                "currency": "USD",
                "minimumPartialAmount": "10.00",
            }
        },
    }
    if email is not None:
        body["customerInformation"]["email"] = email
    if number is not None:
        body["invoiceInformation"]["invoiceNumber"] = number
    return body


async def pay(raw: RawClient, invoice_id: str, amount: str, merchant: str | None = None) -> Any:
    body: dict[str, Any] = {"amount": amount}
    if merchant:
        body["merchantId"] = merchant
    return await raw.admin("POST", f"/__sim/invoices/{invoice_id}/payments", body)


async def stored(raw: RawClient, invoice_id: str) -> dict[str, Any]:
    reply = await raw.admin("GET", f"/__sim/invoices/{invoice_id}")
    assert reply.status == 200
    data: dict[str, Any] = reply.json()
    return data


async def in_state(
    client: CybersourceClient, raw: RawClient, state: str, mode: str = "email"
) -> str:
    """An invoice brought into `state` through the API (and the payer route for PARTIAL/PAID)."""
    if state == "DRAFT":
        created = await client.create_invoice(invoice_body(mode=mode))
    elif state == "CREATED":
        created = await client.create_invoice(invoice_body(mode=mode))
        await client.publish_invoice(str(created.id))
    else:
        created = await client.create_invoice(invoice_body(send=state != "CANCELED", mode=mode))
    invoice_id = str(created.id)
    if state == "PARTIAL":
        assert (await pay(raw, invoice_id, "40.00")).status == 200
    elif state == "PAID":
        assert (await pay(raw, invoice_id, "100.00")).status == 200
    elif state == "CANCELED":
        await client.cancel_invoice(invoice_id)
    assert (await stored(raw, invoice_id))["status"] == state
    return invoice_id


# --- create -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send", "mode", "expected", "history"),
    [
        (False, "email", "DRAFT", ["DRAFT"]),
        (False, "none", "DRAFT", ["DRAFT"]),
        (True, "email", "SENT", ["SEND", "CREATE"]),
        (True, "EMAIL", "SENT", ["SEND", "CREATE"]),
        (True, "none", "CREATED", ["CREATE"]),
        (True, "None", "CREATED", ["CREATE"]),
    ],
)
async def test_create(
    client: CybersourceClient,
    raw: RawClient,
    send: bool,
    mode: str,
    expected: str,
    history: list[str],
) -> None:
    created = await client.create_invoice(invoice_body(send=send, mode=mode))
    assert created.http_status == 201 and created.status == expected
    assert created.raw["_links"]["self"] == {"href": f"/v2/invoices/{created.id}", "method": "GET"}
    has_link = "paymentLink" in created.raw["invoiceInformation"]
    assert has_link is (expected != "DRAFT")
    assert created.raw["orderInformation"]["amountDetails"]["balanceAmount"] == "100.00"
    fetched = await client.get_invoice(str(created.id))
    assert [h["event"] for h in fetched.raw["invoiceHistory"]] == history
    assert (await stored(raw, str(created.id)))["sendCount"] == (1 if expected == "SENT" else 0)


async def test_create_and_send_without_an_address_is_202_and_stays_created(
    client: CybersourceClient, raw: RawClient
) -> None:
    created = await client.create_invoice(invoice_body(send=True, email=None))
    assert created.http_status == 202 and created.accepted_without_email
    assert (
        created.raw["status"] == "ACCEPTED"
        and "created but failed to send an email" in created.raw["message"]
    )
    number = created.raw["message"].split()[2]
    assert (await stored(raw, number))["status"] == "CREATED"


async def test_numbers_are_assigned_increasing_and_reused_numbers_are_duplicates(
    client: CybersourceClient, raw_b: RawClient
) -> None:
    first = await client.create_invoice(invoice_body())
    second = await client.create_invoice(invoice_body())
    assert first.id is not None and first.id.isdigit() and int(str(second.id)) == int(first.id) + 1
    mine = await client.create_invoice(invoice_body(number="INV-1001"))
    assert mine.id == "INV-1001" and mine.raw["invoiceInformation"]["invoiceNumber"] == "INV-1001"
    with pytest.raises(RejectedError) as refused:
        await client.create_invoice(invoice_body(number="INV-1001"))
    assert refused.value.status == 400 and refused.value.is_duplicate_record
    # Numbers belong to a merchant: merchant B may use the same one and cannot see A's invoice.
    reply = await raw_b.call("POST", "/invoicing/v2/invoices", invoice_body(number="INV-1001"))
    assert reply.status == 201
    assert (await raw_b.call("GET", f"/invoicing/v2/invoices/{first.id}")).status == 404


# --- publish / send / update / cancel: every allowed and refused transition -----------------------


@pytest.mark.parametrize(
    ("state", "mode", "expected"),
    [
        ("DRAFT", "email", "CREATED"),
        ("DRAFT", "none", "CREATED"),
        ("CREATED", "email", None),
        ("SENT", "email", None),
        ("PARTIAL", "email", None),
        ("PAID", "email", None),
        ("CANCELED", "email", None),
    ],
)
async def test_publish(
    client: CybersourceClient, raw: RawClient, state: str, mode: str, expected: str | None
) -> None:
    invoice_id = await in_state(client, raw, state, mode)
    if expected is None:
        with pytest.raises(RejectedError) as refused:
            await client.publish_invoice(invoice_id)
        assert refused.value.status == 400 and refused.value.is_action_not_allowed
        assert (await stored(raw, invoice_id))["status"] == state
        return
    published = await client.publish_invoice(invoice_id)
    assert published.status == expected and "paymentLink" in published.raw["invoiceInformation"]
    assert published.raw["_links"]["self"]["href"] == f"/v2/invoices/{invoice_id}/publication"


@pytest.mark.parametrize(
    ("state", "mode", "expected", "event"),
    [
        ("DRAFT", "email", "SENT", "SEND"),
        ("DRAFT", "none", "CREATED", None),
        ("CREATED", "email", "SENT", "SEND"),
        ("SENT", "email", "SENT", "RESEND"),
        ("PARTIAL", "email", "PARTIAL", "RESEND"),
        ("CREATED", "none", None, None),
        ("PAID", "email", None, None),
        ("CANCELED", "email", None, None),
    ],
)
async def test_send(
    client: CybersourceClient,
    raw: RawClient,
    state: str,
    mode: str,
    expected: str | None,
    event: str | None,
) -> None:
    invoice_id = await in_state(client, raw, state, mode)
    mails_before = len((await stored(raw, invoice_id))["emails"])
    if expected is None:
        with pytest.raises(RejectedError) as refused:
            await client.send_invoice(invoice_id)
        assert refused.value.is_action_not_allowed
        assert refused.value.body["message"] == "Requested action is not allowed."
        assert len((await stored(raw, invoice_id))["emails"]) == mails_before
        return
    sent = await client.send_invoice(invoice_id)
    assert sent.status == expected
    after = await stored(raw, invoice_id)
    assert after["status"] == expected
    assert [m["kind"] for m in after["emails"][mails_before:]] == ([event] if event else [])
    if event:
        assert after["invoiceHistory"][0]["event"] == event


@pytest.mark.parametrize(
    ("state", "allowed"),
    [
        ("DRAFT", True),
        ("CREATED", True),
        ("SENT", True),
        ("PARTIAL", False),
        ("PAID", False),
        ("CANCELED", False),
    ],
)
async def test_update_is_a_full_replacement(
    client: CybersourceClient, raw: RawClient, state: str, allowed: bool
) -> None:
    invoice_id = await in_state(client, raw, state)
    replacement = invoice_body(total="250.00")
    del replacement["customerInformation"]["name"]  # omitted -> dropped
    replacement["invoiceInformation"]["description"] = "Replaced"
    replacement["invoiceInformation"]["sendImmediately"] = True  # update never sends
    if not allowed:
        with pytest.raises(RejectedError) as refused:
            await client.update_invoice(invoice_id, replacement)
        assert refused.value.is_action_not_allowed
        return
    before = await stored(raw, invoice_id)
    updated = await client.update_invoice(invoice_id, replacement)
    assert updated.status == state
    assert "name" not in updated.raw["customerInformation"]
    assert updated.raw["invoiceInformation"]["description"] == "Replaced"
    assert updated.raw["invoiceInformation"]["invoiceNumber"] == invoice_id
    assert updated.raw["orderInformation"]["amountDetails"]["totalAmount"] == "250.00"
    after = await stored(raw, invoice_id)
    assert after["invoiceHistory"][0]["event"] == "UPDATE" and after["emails"] == before["emails"]


async def test_a_new_email_address_replaces_the_payment_link(
    client: CybersourceClient, raw: RawClient
) -> None:
    invoice_id = await in_state(client, raw, "SENT")
    old_link = (await client.get_invoice(invoice_id)).raw["invoiceInformation"]["paymentLink"]
    same = await client.update_invoice(invoice_id, invoice_body())
    assert same.raw["invoiceInformation"]["paymentLink"] == old_link
    moved = await client.update_invoice(invoice_id, invoice_body(email="new@example.com"))
    assert moved.raw["invoiceInformation"]["paymentLink"] != old_link


@pytest.mark.parametrize(
    ("state", "allowed"),
    [
        ("DRAFT", True),
        ("CREATED", True),
        ("SENT", True),
        ("PARTIAL", False),
        ("PAID", False),
        ("CANCELED", False),
    ],
)
async def test_cancel(client: CybersourceClient, raw: RawClient, state: str, allowed: bool) -> None:
    invoice_id = await in_state(client, raw, state)
    if not allowed:
        with pytest.raises(RejectedError) as refused:
            await client.cancel_invoice(invoice_id)
        assert refused.value.is_action_not_allowed
        return
    canceled = await client.cancel_invoice(invoice_id)
    assert canceled.status == "CANCELED"
    assert (
        set(canceled.raw["_links"]) == {"self"}
        and "paymentLink" not in canceled.raw["invoiceInformation"]
    )


@pytest.mark.parametrize("call", ["get", "update", "send", "cancel", "publish"])
async def test_unknown_invoice_is_404(client: CybersourceClient, call: str) -> None:
    with pytest.raises(RejectedError) as refused:
        if call == "update":
            await client.update_invoice("nope", invoice_body())
        else:
            await getattr(client, f"{call}_invoice")("nope")
    assert refused.value.is_not_found
    assert (
        refused.value.body["status"] == "NOTFOUND"
        and refused.value.body["message"] == "Invoice does not exist."
    )


# --- payer actions --------------------------------------------------------------------------------


async def test_payments_partial_then_paid_with_history_and_webhooks(
    client: CybersourceClient, raw: RawClient, receiver: Receiver
) -> None:
    invoice_id = await in_state(client, raw, "SENT")
    first = await pay(raw, invoice_id, "30.00")
    assert (
        first.status == 200
        and first.json()["status"] == "PARTIAL"
        and first.json()["balanceAmount"] == "70.00"
    )
    resent = await client.send_invoice(invoice_id)
    assert resent.status == "PARTIAL"
    second = await pay(raw, invoice_id, "70")
    assert second.json()["status"] == "PAID" and second.json()["balanceAmount"] == "0.00"
    invoice = await client.get_invoice(invoice_id)
    assert (
        invoice.status == "PAID"
        and invoice.raw["orderInformation"]["amountDetails"]["balanceAmount"] == "0.00"
    )
    assert "paymentLink" in invoice.raw["invoiceInformation"]
    payments = [h for h in invoice.raw["invoiceHistory"] if h["event"] == "PAYMENT"]
    assert [p["transactionDetails"]["amount"] for p in payments] == [
        "70.00",
        "30.00",
    ]  # newest first
    assert all(p["transactionDetails"]["transactionId"] for p in payments)
    await until(lambda: len(receiver.received) >= 4)
    events = [r["headers"]["v-c-event-type"] for r in receiver.received]
    assert events == [
        "invoicing.customer.invoice.send",
        "invoicing.customer.invoice.partial-payment",
        "invoicing.customer.invoice.partial-resend",
        "invoicing.customer.invoice.paid",
    ]


@pytest.mark.parametrize(
    ("state", "amount", "partial", "status", "error"),
    [
        ("SENT", "100.01", True, 422, "PAYMENT_REFUSED"),  # overpayment
        ("SENT", "50.00", False, 422, "PAYMENT_REFUSED"),  # partial payments not allowed
        ("SENT", "5.00", True, 422, "PAYMENT_REFUSED"),  # below minimumPartialAmount
        ("SENT", "-1", True, 422, "INVALID_AMOUNT"),
        ("DRAFT", "100.00", True, 409, "NOT_PAYABLE"),
        ("CANCELED", "100.00", True, 409, "NOT_PAYABLE"),
    ],
)
async def test_refused_payments(
    client: CybersourceClient,
    raw: RawClient,
    state: str,
    amount: str,
    partial: bool,
    status: int,
    error: str,
) -> None:
    body = invoice_body(send=state == "SENT", partial=partial)
    invoice_id = str((await client.create_invoice(body)).id)
    if state == "CANCELED":
        await client.cancel_invoice(invoice_id)
    reply = await pay(raw, invoice_id, amount)
    assert reply.status == status and reply.json()["error"] == error
    assert (await stored(raw, invoice_id))["paidAmount"] == "0"


async def test_a_payment_that_pays_the_rest_may_be_below_the_minimum(
    client: CybersourceClient, raw: RawClient
) -> None:
    invoice_id = await in_state(client, raw, "SENT")
    assert (await pay(raw, invoice_id, "95.00")).json()["status"] == "PARTIAL"
    assert (await pay(raw, invoice_id, "5.00")).json()["status"] == "PAID"


async def test_payment_for_another_merchant(raw: RawClient, raw_b: RawClient) -> None:
    created = await raw_b.call("POST", "/invoicing/v2/invoices", invoice_body(send=True))
    invoice_id = created.json()["id"]
    assert (await pay(raw, invoice_id, "10.00")).status == 404  # default merchant is A
    reply = await pay(raw, invoice_id, "10.00", merchant=MERCHANT_B.merchant_id)
    assert reply.status == 200 and reply.json()["merchantId"] == MERCHANT_B.merchant_id
