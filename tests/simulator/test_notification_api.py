"""The simulator's webhook management API (keys, products, subscriptions with status, the test
notification), driven over real HTTP by the project's own client
(`app/cybersource/webhook_admin.py`); notifications are checked with the facade's verifier, as the
facade would check them."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.cybersource.client import CybersourceClient
from app.cybersource.errors import AuthenticationError, RejectedError
from app.cybersource.notifications import read_notification, verify
from app.cybersource.profiles import (
    LOCAL_KEY_ID,
    LOCAL_MERCHANT_ID,
    LOCAL_SHARED_SECRET,
    MerchantProfile,
)
from app.cybersource.webhook_admin import INVOICING_EVENTS, WebhookAdmin, WebhookSubscription
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig
from tests.integration.waiting import until
from tests.support.receivers import Received, Receiver
from tests.support.servers import serve

SAMPLE = Path(__file__).parents[1] / "fixtures/cybersource/samples"
OTHER_MERCHANT = MerchantConfig("other_merchant", "other-key", base64.b64encode(b"o" * 32).decode())


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    config = SimulatorConfig(
        merchants=(
            MerchantConfig(LOCAL_MERCHANT_ID, LOCAL_KEY_ID, LOCAL_SHARED_SECRET),
            OTHER_MERCHANT,
        ),
        log_requests=False,
    )
    with serve(create_simulator_app(config), ready_path="/__sim/health") as url:
        yield url


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    with serve(rec.app(), ready_path="/health") as url:
        yield rec, url


@pytest.fixture
async def client(sim_url: str) -> AsyncIterator[CybersourceClient]:
    profile = MerchantProfile(
        merchant_id=LOCAL_MERCHANT_ID,
        key_id=LOCAL_KEY_ID,
        shared_secret=LOCAL_SHARED_SECRET,
        base_url=sim_url,
    )
    async with CybersourceClient(profile) as made:
        yield made


async def wait_for(rec: Receiver, count: int) -> list[Received]:
    await until(lambda: len(rec.snapshot()) >= count, what=f"{count} notifications")
    return rec.snapshot()


async def test_a_key_is_32_random_bytes_shown_once_with_its_expiry(client):
    admin = WebhookAdmin(client)
    key = await admin.create_signature_key(expiry_days=30)
    info = key.key_information
    assert key.http_status == 201 and key.status == "SUCCESS"
    assert info.key is not None and len(base64.b64decode(info.key.get_secret_value())) == 32
    assert info.organization_id == LOCAL_MERCHANT_ID and info.key_type == "sharedSecret"
    assert key.expires_at is not None
    assert abs(key.expires_at - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    other = await admin.create_signature_key()
    assert other.key_information.key_id != info.key_id

    with pytest.raises(RejectedError):  # the sender organisation header is required
        await client.call("POST", "/kms/egress/v2/keys-sym", type(key), body={"a": 1})
    body = {
        "clientRequestAction": "CREATE",
        "keyInformation": {"keyType": "sharedSecret", "organizationId": "other_merchant"},
    }
    with pytest.raises(AuthenticationError):  # 403: not the authenticated organisation
        await client.call(
            "POST",
            "/kms/egress/v2/keys-sym",
            type(key),
            body=body,
            headers={"v-c-sender-organization-id": LOCAL_MERCHANT_ID},
        )


async def test_products_name_every_invoicing_event(client):
    products = (await WebhookAdmin(client).products()).products
    assert [p.product_id for p in products] == ["customerInvoicing"]
    assert sorted(e.event_name for e in products[0].event_types) == sorted(INVOICING_EVENTS)


async def test_subscription_status_decides_and_the_newest_key_signs(client, receiver):
    rec, url = receiver
    admin = WebhookAdmin(client)
    first = await admin.create_signature_key()
    sub = await admin.create_subscription(url + rec.path, health_check_url=url + "/health")
    assert sub.status == "INACTIVE" and set(sub.event_types) == set(INVOICING_EVENTS)

    async def active() -> bool:
        return (await admin.subscription(sub.webhook_id)).status == "ACTIVE"

    await until(active, what="the health probe activates it")
    listed = (await admin.subscriptions()).subscriptions
    assert sub.webhook_id in [s.webhook_id for s in listed]

    async def send_one() -> str:
        invoice = await client.create_invoice(
            {
                "customerInformation": {"name": "Pat", "email": "pat@example.com"},
                "invoiceInformation": {
                    "description": "x",
                    "dueDate": "2030-01-01",
                    "sendImmediately": True,
                    "deliveryMode": "email",
                },
                "orderInformation": {"amountDetails": {"totalAmount": "5.00", "currency": "USD"}},
            }
        )
        return str(invoice.invoice_number)

    seen = len(rec.snapshot())
    number = await send_one()
    [note] = (await wait_for(rec, seen + 1))[seen:]
    keys = {first.key_information.key_id: _secret(first)}
    body = verify(note.body, note.headers["v-c-signature"], keys)
    assert read_notification(body).invoice_number == number
    assert note.headers["v-c-webhook-id"] == sub.webhook_id

    second = await admin.create_signature_key()
    seen = len(rec.snapshot())
    await send_one()
    [note] = (await wait_for(rec, seen + 1))[seen:]
    assert f"keyId={second.key_information.key_id};" in note.headers["v-c-signature"]
    verify(
        note.body, note.headers["v-c-signature"], {second.key_information.key_id: _secret(second)}
    )

    inactive = await admin.set_status(sub.webhook_id, "INACTIVE")
    assert inactive.status == "INACTIVE"
    seen = len(rec.snapshot())
    await send_one()
    await admin.set_status(sub.webhook_id, "ACTIVE")
    await admin.send_test(sub.webhook_id)  # a marker: everything before it was not sent
    [only] = (await wait_for(rec, seen + 1))[seen:]
    assert "testPayload" in json.loads(only.body)["payloads"]

    await admin.delete_subscription(sub.webhook_id)
    with pytest.raises(RejectedError):
        await admin.subscription(sub.webhook_id)


async def test_the_test_notification_is_signed_like_the_others(client, receiver):
    rec, url = receiver
    admin = WebhookAdmin(client)
    key = await admin.create_signature_key()
    sub = await admin.create_subscription(
        url + rec.path, event_types=["invoicing.customer.invoice.paid"]
    )
    seen = len(rec.snapshot())
    sample = await admin.send_test(sub.webhook_id)
    assert sample.event_type == "invoicing.customer.invoice.paid"
    [note] = (await wait_for(rec, seen + 1))[seen:]
    body = verify(
        note.body, note.headers["v-c-signature"], {key.key_information.key_id: _secret(key)}
    )
    assert read_notification(body).is_test
    await admin.delete_subscription(sub.webhook_id)


async def test_the_official_sample_body_subscribes_too(client):
    admin = WebhookAdmin(client)
    await admin.create_signature_key()
    sample = json.loads((SAMPLE / "sdk-sample.create-invoicing-webhook.request.json").read_text())
    body: dict[str, Any] = {**sample["body"], "organizationId": LOCAL_MERCHANT_ID}
    made = await client.call(
        "POST", "/notification-subscriptions/v2/webhooks", WebhookSubscription, body=body
    )
    assert set(made.event_types) == set(INVOICING_EVENTS)
    assert made.webhook_url == "https://MyWebhookServer.com:8443/simulateClient"
    await admin.delete_subscription(made.webhook_id)


def _secret(key: Any) -> bytes:
    return base64.b64decode(key.key_information.key.get_secret_value())
