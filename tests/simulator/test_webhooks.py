"""Invoicing webhooks: WEBHOOKS.md's worked example, signed deliveries, retries, body shapes."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.simulator import SimulatorConfig, WebhookConfig
from app.simulator.webhooks import build_envelope, compact, signature_header, webhook_signature
from tests.simulator.helpers import (
    MERCHANT_A,
    WEBHOOK_KEY_ID,
    WEBHOOK_SECRET,
    RawClient,
    Receiver,
    ServerThread,
    start_simulator,
    until,
    verify_webhook,
)
from tests.simulator.test_lifecycle import invoice_body

KEYS = {WEBHOOK_KEY_ID: WEBHOOK_SECRET}


def test_worked_example_of_section_10() -> None:
    secret = base64.b64encode(hashlib.sha256(b"webhooks-md worked example").digest()).decode()
    assert secret == "NzY9sBMMPcbix1qB12z1gQB0GWm7SgWYnD8bcX/lDY0="
    data = {
        "invoiceNumber": "INV-1001",
        "eventType": "invoicing.customer.invoice.paid",
        "organizationID": "acme_demo",
        "currency": "USD",
        "invoiceBalance": "0.00",
        "balanceAmount": "0.00",
        "dueDate": "2026-01-15",
        "payerName": "Pat Payer",
        "emailTo": "pat@example.com",
    }
    envelope = build_envelope(
        shape="payload",
        event_type="invoicing.customer.invoice.paid",
        webhook_id="3d9a6f1c-8b20-4c55-e063-0a588e0a77aa",
        organization_id="acme_demo",
        event_date="2026-01-01T10:00:00",
        trace_id="5b0f3c2e-91d4-4a7b-8c6e-2f1a0d9e4b31",
        retry_number=0,
        request_type="NEW",
        data=data,
        notification_id="unused",
    )
    raw_body = compact(envelope)
    assert len(raw_body.encode()) == 580
    assert raw_body.startswith(
        '{"eventType":"invoicing.customer.invoice.paid","webhookId":"3d9a6f1c'
    )
    t_ms = 1767261600000
    sig = webhook_signature(secret, t_ms, compact(envelope["payload"]))
    assert sig == "ru/rjN+2goDY7brLDPFjYlvusEITPgklHU7G6q31lXQ="
    assert signature_header(t_ms, "7c1e5a90-3f2b-4d8e-e063-0b588e0a4f11", sig) == (
        "t=1767261600000;keyId=7c1e5a90-3f2b-4d8e-e063-0b588e0a4f11;"
        "sig=ru/rjN+2goDY7brLDPFjYlvusEITPgklHU7G6q31lXQ="
    )
    assert (
        webhook_signature(secret, t_ms, raw_body) == "U4dDEB8RaSsYbeL91e8JUisLNqzwPpyP9mqL82tIarc="
    )
    keys = {"7c1e5a90-3f2b-4d8e-e063-0b588e0a4f11": secret}
    header = f"t={t_ms};keyId=7c1e5a90-3f2b-4d8e-e063-0b588e0a4f11;sig={sig}"
    assert verify_webhook(raw_body.encode(), header, keys, t_ms + 2000) == "payload"
    tampered = raw_body.replace('"balanceAmount":"0.00"', '"balanceAmount":"9.99"').encode()
    assert verify_webhook(tampered, header, keys, t_ms + 2000) is None


def _check_signed(delivery: dict[str, Any], event: str) -> dict[str, Any]:
    headers, raw_body = delivery["headers"], delivery["body"]
    assert (
        verify_webhook(raw_body, headers["v-c-signature"], KEYS, int(time.time() * 1000))
        == "payload"
    )
    body: dict[str, Any] = json.loads(raw_body)
    assert raw_body == compact(body).encode()  # compact JSON on the wire
    assert headers["Content-Type"] == "application/json"
    assert (
        headers["v-c-event-type"]
        == body["eventType"]
        == body["payload"]["data"]["eventType"]
        == event
    )
    assert headers["v-c-organization-id"] == body["organizationId"] == MERCHANT_A.merchant_id
    assert headers["v-c-product-name"] == body["productId"] == "customerInvoicing"
    assert headers["v-c-transaction-trace-id"] == body["transactionTraceId"]
    assert headers["v-c-webhook-id"] == body["webhookId"]
    assert headers["v-c-retry-count"] == str(body["retryNumber"])
    assert headers["v-c-request-type"] == body["requestType"]
    assert all(isinstance(v, str) for v in body["payload"]["data"].values())
    return body


async def test_a_payment_sends_a_signed_webhook(raw: RawClient, receiver: Receiver) -> None:
    invoice = (await raw.call("POST", "/invoicing/v2/invoices", invoice_body(send=True))).json()
    await raw.admin("POST", f"/__sim/invoices/{invoice['id']}/payments", {"amount": "100.00"})
    sent, paid = await receiver.wait_for(2)
    _check_signed(sent, "invoicing.customer.invoice.send")
    body = _check_signed(paid, "invoicing.customer.invoice.paid")
    data = body["payload"]["data"]
    assert (
        data["invoiceNumber"] == invoice["id"] and data["organizationID"] == MERCHANT_A.merchant_id
    )
    assert data["balanceAmount"] == data["invoiceBalance"] == "0.00" and data["currency"] == "USD"
    assert data["emailTo"] == "payer@example.com" and data["payerName"] == "Pat Payer"
    assert data["invoiceUrl"] == invoice["invoiceInformation"]["paymentLink"]
    assert body["requestType"] == "NEW" and body["retryNumber"] == 0

    async def delivered() -> bool:
        return await _outcomes(raw) == ["delivered", "delivered"]

    await until(delivered)


async def _outcomes(raw: RawClient) -> list[str]:
    return [d["outcome"] for d in (await raw.admin("GET", "/__sim/webhooks")).json()]


async def test_events_per_action(raw: RawClient, receiver: Receiver) -> None:
    draft = (await raw.call("POST", "/invoicing/v2/invoices", invoice_body())).json()["id"]
    await raw.call(
        "POST", f"/invoicing/v2/invoices/{draft}/publication"
    )  # publishing e-mails nothing
    await raw.call("POST", f"/invoicing/v2/invoices/{draft}/delivery")
    await raw.call("POST", f"/invoicing/v2/invoices/{draft}/delivery")  # resend of a SENT invoice
    await raw.call("POST", f"/invoicing/v2/invoices/{draft}/cancelation")
    received = await receiver.wait_for(3)
    await until(lambda: len(receiver.received) >= 3)
    assert [r["headers"]["v-c-event-type"] for r in received] == [
        "invoicing.customer.invoice.send",
        "invoicing.customer.invoice.send",
        "invoicing.customer.invoice.cancel",
    ]
    listed = (
        await raw.admin("GET", "/__sim/webhooks?eventType=invoicing.customer.invoice.cancel")
    ).json()
    assert len(listed) == 1 and listed[0]["invoiceNumber"] == draft


async def test_an_invoices_notifications_go_out_one_after_the_other(
    raw: RawClient, receiver: Receiver
) -> None:
    """A slow receiver: the invoice's next notification waits until the previous one was answered,
    so events arrive in the order they happened (concurrent first attempts arrived out of order)."""
    receiver.delays[:] = [0.5]
    draft = (await raw.call("POST", "/invoicing/v2/invoices", invoice_body())).json()["id"]
    await raw.call("POST", f"/invoicing/v2/invoices/{draft}/delivery")
    await raw.call("POST", f"/invoicing/v2/invoices/{draft}/cancelation")
    first, second = await receiver.wait_for(2)
    await until(lambda: "answered_at" in second)
    assert second["arrived_at"] >= first["answered_at"]
    assert [r["headers"]["v-c-event-type"] for r in (first, second)] == [
        "invoicing.customer.invoice.send",
        "invoicing.customer.invoice.cancel",
    ]


async def test_a_failing_receiver_gets_signed_retries(raw: RawClient, receiver: Receiver) -> None:
    receiver.script[:] = [500, 503]
    invoice = (await raw.call("POST", "/invoicing/v2/invoices", invoice_body(send=True))).json()
    attempts = await receiver.wait_for(3)
    bodies = [_check_signed(a, "invoicing.customer.invoice.send") for a in attempts]
    assert [a["answered"] for a in attempts] == [500, 503, 200]
    assert [b["requestType"] for b in bodies] == ["NEW", "RETRY", "RETRY"]
    assert [b["retryNumber"] for b in bodies] == [0, 1, 2]
    assert len({b["transactionTraceId"] for b in bodies}) == 3
    assert len({a["headers"]["v-c-signature"] for a in attempts}) == 3  # fresh t every attempt
    assert len({json.dumps(b["payload"]) for b in bodies}) == 1  # same event every time
    log = (await raw.admin("GET", f"/__sim/webhooks?invoiceNumber={invoice['id']}")).json()
    assert log[0]["outcome"] == "delivered"
    assert [a.get("status") for a in log[0]["attempts"]] == [500, 503, 200]


async def test_a_receiver_that_never_answers_2xx_ends_failed(
    raw: RawClient, receiver: Receiver
) -> None:
    receiver.script[:] = [500, 500, 500, 500]
    await raw.call("POST", "/invoicing/v2/invoices", invoice_body(send=True))
    await receiver.wait_for(4)

    async def failed() -> bool:
        return await _outcomes(raw) == ["failed"]

    await until(failed, timeout=5)
    assert len(receiver.received) == 4  # the first attempt and three retries, then no more


@pytest.fixture
def shape_c(receiver: Receiver) -> Iterator[ServerThread]:
    webhook = WebhookConfig(
        url=receiver.url,
        key_id=WEBHOOK_KEY_ID,
        secret=WEBHOOK_SECRET,
        retry_delays=(),
        body_shape="payloads",
        sign="raw-body",
    )
    server, _ = start_simulator(
        SimulatorConfig(merchants=(MERCHANT_A,), webhook=webhook, log_requests=False)
    )
    yield server
    server.stop()


async def test_payloads_shape_signed_over_the_raw_body(
    raw: RawClient, receiver: Receiver, shape_c: ServerThread
) -> None:
    other = RawClient(shape_c.url, raw.session)
    await other.call("POST", "/invoicing/v2/invoices", invoice_body(send=True))
    [delivery] = await receiver.wait_for(1)
    body = json.loads(delivery["body"])
    assert set(body) == {
        "notificationId",
        "retryNumber",
        "eventType",
        "eventDate",
        "webhookId",
        "payloads",
    }
    assert body["payloads"][0]["data"]["eventType"] == "invoicing.customer.invoice.send"
    assert (
        verify_webhook(
            delivery["body"], delivery["headers"]["v-c-signature"], KEYS, int(time.time() * 1000)
        )
        == "raw-body"
    )
