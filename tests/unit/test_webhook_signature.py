"""The receiver side of Cybersource webhook signatures, on the worked example of the webhook
guide."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from app.cybersource.notifications import (
    WebhookInvalid,
    compact,
    read_notification,
    verify,
    verify_signed,
)

KEY_ID = "7c1e5a90-3f2b-4d8e-e063-0b588e0a4f11"
SECRET = hashlib.sha256(b"webhooks-md worked example").digest()
T_MS = 1767261600000
PAYLOAD = {
    "data": {
        "invoiceNumber": "INV-1001",
        "eventType": "invoicing.customer.invoice.paid",
        "organizationID": "acme_demo",
        "currency": "USD",
        "invoiceBalance": "0.00",
        "balanceAmount": "0.00",
        "dueDate": "2026-01-15",
        "payerName": "Pat Payer",
        "emailTo": "pat@example.com",
    },
    "organizationId": "acme_demo",
}
ENVELOPE = {
    "eventType": "invoicing.customer.invoice.paid",
    "webhookId": "3d9a6f1c-8b20-4c55-e063-0a588e0a77aa",
    "productId": "customerInvoicing",
    "organizationId": "acme_demo",
    "eventDate": "2026-01-01T10:00:00",
    "transactionTraceId": "5b0f3c2e-91d4-4a7b-8c6e-2f1a0d9e4b31",
    "retryNumber": 0,
    "payload": PAYLOAD,
    "requestType": "NEW",
}
RAW = compact(ENVELOPE).encode()
SIG_MEMBER = "ru/rjN+2goDY7brLDPFjYlvusEITPgklHU7G6q31lXQ="
SIG_RAW = "U4dDEB8RaSsYbeL91e8JUisLNqzwPpyP9mqL82tIarc="
KEYS = {KEY_ID: SECRET}


def header(sig: str, t: int = T_MS, key_id: str = KEY_ID) -> str:
    return f"t={t};keyId={key_id};sig={sig}"


def test_worked_example_secret_and_both_signing_readings():
    assert base64.b64encode(SECRET).decode() == "NzY9sBMMPcbix1qB12z1gQB0GWm7SgWYnD8bcX/lDY0="
    assert (
        verify(RAW, header(SIG_MEMBER), KEYS, now_ms=T_MS + 2000)["eventType"]
        == ENVELOPE["eventType"]
    )
    assert (
        verify(RAW, header(SIG_RAW), KEYS, now_ms=T_MS + 2000)["webhookId"] == ENVELOPE["webhookId"]
    )


@pytest.mark.parametrize(
    ("raw", "value", "now", "reason"),
    [
        (
            RAW.replace(b'"balanceAmount":"0.00"', b'"balanceAmount":"9.99"'),
            header(SIG_MEMBER),
            T_MS,
            "does not match",
        ),
        (RAW, header(SIG_MEMBER), T_MS + 7_200_000, "window"),
        (RAW, header(SIG_MEMBER), T_MS - 600_000, "window"),
        (RAW, header(SIG_MEMBER, key_id="other"), T_MS, "unknown keyId"),
        (RAW, "garbage", T_MS, "malformed"),
        (RAW, None, T_MS, "missing"),
    ],
)
def test_refusals(raw, value, now, reason):
    with pytest.raises(WebhookInvalid, match=reason):
        verify(raw, value, KEYS, now_ms=now)


def test_notification_fields_and_dedup_key():
    note = read_notification(json.loads(RAW))
    assert (note.event_type, note.invoice_number, note.organization_id) == (
        "invoicing.customer.invoice.paid",
        "INV-1001",
        "acme_demo",
    )
    assert note.dedup_key == read_notification(json.loads(RAW)).dedup_key
    shape_c = {
        "notificationId": "n-1",
        "eventType": "invoicing.customer.invoice.send",
        "payloads": [
            {"data": {"invoiceNumber": "INV-7", "eventType": "invoicing.customer.invoice.send"}}
        ],
    }
    note_c = read_notification(shape_c)
    assert note_c.invoice_number == "INV-7"
    # The key is the digest of the signed content, never the unsigned notificationId.
    assert note_c.dedup_key != "n-1"
    assert read_notification({**shape_c, "notificationId": "n-2"}).dedup_key == note_c.dedup_key
    test = read_notification({"payloads": {"testPayload": {"message": "hi"}}})
    assert test.is_test
    with pytest.raises(WebhookInvalid, match="disagrees"):
        read_notification({**ENVELOPE, "eventType": "invoicing.customer.invoice.cancel"})


def test_dedup_key_is_the_signed_content_whatever_the_envelope_says():
    """Only `payload` is signed: altered envelopes (ids, padding) are the same notification."""
    signed = verify_signed(RAW, header(SIG_MEMBER), KEYS, now_ms=T_MS + 2000)
    original = read_notification(signed.body, signed.content)
    altered = json.loads(RAW)
    altered.update(webhookId="another", notificationId="n-99", padding="x" * 1000)
    raw = json.dumps(altered).encode()
    replay = verify_signed(raw, header(SIG_MEMBER), KEYS, now_ms=T_MS + 2000)
    assert read_notification(replay.body, replay.content).dedup_key == original.dedup_key
    assert original.organization_id == "acme_demo"  # from the signed payload, not the envelope
    altered["organizationId"] = "someone_else"
    assert read_notification(altered).organization_id == "acme_demo"
