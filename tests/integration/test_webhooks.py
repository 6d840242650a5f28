"""The simulator's signed invoicing webhooks reach the facade and update its store."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import httpx

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
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.integration.waiting import add_fault, fault_hits, until
from tests.support.postgres import fresh_database
from tests.support.servers import free_port, serve


async def _wait_for(check, seconds: float = 15.0):
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


async def test_payment_webhook_updates_the_store_without_refresh():
    sim_port = free_port()
    with fresh_database() as db:
        facade = create_app(facade_settings(db, f"http://127.0.0.1:{sim_port}"))
        with serve(facade) as facade_url:
            sim_config = SimulatorConfig(
                merchants=(
                    MerchantConfig(
                        merchant_id=LOCAL_MERCHANT_ID,
                        key_id=LOCAL_KEY_ID,
                        shared_secret=LOCAL_SHARED_SECRET,
                    ),
                ),
                webhook=WebhookConfig(
                    url=f"{facade_url}/v1/webhooks/cybersource",
                    key_id=LOCAL_WEBHOOK_KEY_ID,
                    secret=LOCAL_WEBHOOK_SECRET,
                    retry_delays=(0.2, 0.5),
                ),
                log_requests=False,
            )
            with serve(
                create_simulator_app(sim_config), ready_path="/__sim/faults", port=sim_port
            ) as sim_url:
                async with (
                    client_for(facade_url) as api,
                    httpx.AsyncClient(base_url=sim_url) as sim,
                ):
                    created = await api.post(
                        "/v1/invoices", headers=key(), json=invoice_body(allowPartialPayments=True)
                    )
                    assert created.status_code == 201, created.text
                    number = created.json()["invoiceNumber"]
                    # The simulator's `send` notification races our own send command: one event
                    # only.
                    sent = await api.post(f"/v1/invoices/{number}/send", headers=key())
                    assert sent.status_code == 200, sent.text
                    await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "40.00"})

                    async def partial():
                        body = (await api.get(f"/v1/invoices/{number}")).json()
                        return body["status"] == "PARTIAL" and body

                    body = await _wait_for(partial)
                    assert body and body["balanceAmount"] == "60.00"
                    await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "60.00"})

                    async def paid():
                        return (await api.get(f"/v1/invoices/{number}")).json()["status"] == "PAID"

                    assert await _wait_for(paid)
                    deliveries = (await sim.get("/__sim/webhooks")).json()
                    assert deliveries, "the simulator recorded no webhook deliveries"
                    events = [
                        e["type"]
                        for e in (await api.get("/v1/events", params={"limit": 100})).json()[
                            "items"
                        ]
                        if e["invoiceNumber"] == number
                    ]
                    assert events == [
                        "invoice.created",
                        "invoice.sent",
                        "invoice.partially_paid",
                        "invoice.paid",
                    ]


async def test_forged_webhook_is_refused(facade_url: str):
    async with httpx.AsyncClient(base_url=facade_url) as client:
        response = await client.post(
            "/v1/webhooks/cybersource",
            content=b'{"payload": {}}',
            headers={"v-c-signature": "t=1;keyId=x;sig=AAAA"},
        )
        assert response.status_code == 401
        assert response.json()["code"] == "unauthenticated"


async def test_previous_webhook_key_still_accepted_during_rotation(
    database_url: str, simulator_url: str
):
    old_secret = base64.b64encode(hashlib.sha256(b"last year's key").digest()).decode()
    settings = facade_settings(
        database_url,
        simulator_url,
        relay_in_process=False,
        cybersource_webhook_previous_keys=json.dumps([{"key_id": "old-key", "secret": old_secret}]),
    )
    body = json.dumps({"payloads": {"testPayload": {"message": "test"}}}, separators=(",", ":"))

    def signed(key_id: str, secret: str) -> dict[str, str]:
        t = int(time.time() * 1000)
        message = f"{t}.{json.dumps({'testPayload': {'message': 'test'}}, separators=(',', ':'))}"
        sig = base64.b64encode(
            hmac.new(base64.b64decode(secret), message.encode(), hashlib.sha256).digest()
        )
        return {
            "v-c-signature": f"t={t};keyId={key_id};sig={sig.decode()}",
            "Content-Type": "application/json",
        }

    with serve(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            old = await client.post(
                "/v1/webhooks/cybersource", content=body, headers=signed("old-key", old_secret)
            )
            assert old.status_code == 200, old.text
            current = await client.post(
                "/v1/webhooks/cybersource",
                content=body,
                headers=signed(LOCAL_WEBHOOK_KEY_ID, LOCAL_WEBHOOK_SECRET),
            )
            assert current.status_code == 200, current.text
            unknown = await client.post(
                "/v1/webhooks/cybersource", content=body, headers=signed("retired-key", old_secret)
            )
            assert unknown.status_code == 401


async def test_a_webhook_holds_no_connection_while_cybersource_answers():
    """With a pool of one: a webhook whose confirming GET hangs leaves the pool to reads;
    Cybersource's retry of the notification then records the payment."""
    sim_port = free_port()
    with fresh_database() as db:
        facade = create_app(
            facade_settings(
                db,
                f"http://127.0.0.1:{sim_port}",
                database_pool_size=1,
                database_pool_timeout_seconds=0.5,
                reconcile_after_seconds=0,
            )
        )
        with serve(facade) as facade_url:
            sim_config = SimulatorConfig(
                merchants=(
                    MerchantConfig(
                        merchant_id=LOCAL_MERCHANT_ID,
                        key_id=LOCAL_KEY_ID,
                        shared_secret=LOCAL_SHARED_SECRET,
                    ),
                ),
                webhook=WebhookConfig(
                    url=f"{facade_url}/v1/webhooks/cybersource",
                    key_id=LOCAL_WEBHOOK_KEY_ID,
                    secret=LOCAL_WEBHOOK_SECRET,
                    retry_delays=(0.2, 0.5, 1.0),
                ),
                log_requests=False,
                hang_s=30.0,
            )
            with serve(
                create_simulator_app(sim_config), ready_path="/__sim/faults", port=sim_port
            ) as sim_url:
                async with (
                    client_for(facade_url) as api,
                    httpx.AsyncClient(base_url=sim_url) as sim,
                ):
                    created = await api.post(
                        "/v1/invoices", headers=key(), json=invoice_body(sendImmediately=True)
                    )
                    assert created.status_code == 201, created.text
                    number = created.json()["invoiceNumber"]
                    hang = await add_fault(
                        sim,
                        action="hang",
                        method="GET",
                        times=1,
                        path=f"/invoicing/v2/invoices/{number}",
                    )
                    await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
                    await until(
                        lambda: fault_hits(sim, hang),
                        what="the webhook's GET to reach the simulator",
                    )
                    reads = [(await api.get("/v1/invoices")).status_code for _ in range(3)]
                    assert reads == [200, 200, 200]

                    async def paid():
                        return (await api.get(f"/v1/invoices/{number}")).json()["status"] == "PAID"

                    await until(paid, what="the retried notification to record the payment")
