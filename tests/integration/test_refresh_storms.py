"""Refresh storms and webhook replays: concurrent reads of one invoice share one Cybersource call.

With Cybersource slow, forty `?refresh=true` of one invoice used to queue on the invoice's row lock
holding pooled connections (503s for them and for unrelated callers) and made forty GETs upstream.
Now they coalesce into one GET and one write, the waiters hold no connection, and a per-caller rate
limit answers 429 with Retry-After. Replays of one signed notification coalesce the same way.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import httpx

from app.main import create_app
from app.settings import LOCAL_MERCHANT_ID, LOCAL_WEBHOOK_KEY_ID, LOCAL_WEBHOOK_SECRET
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.integration.waiting import add_fault, fault_hits, until
from tests.support.postgres import fresh_database
from tests.support.servers import serve


def signed_notification(
    number: str, organization: str = LOCAL_MERCHANT_ID, *, balance: str = "0.00", **envelope
):
    payload = {
        "data": {
            "invoiceNumber": number,
            "eventType": "invoicing.customer.invoice.paid",
            "organizationID": organization,
            "emailTo": "tanya.lee@example.com",
            "balanceAmount": balance,
        },
        "organizationId": organization,
    }
    body = {
        "eventType": "invoicing.customer.invoice.paid",
        "webhookId": "w-1",
        "organizationId": organization,
        "payload": payload,
        **envelope,
    }
    t = int(time.time() * 1000)
    message = f"{t}.{json.dumps(payload, separators=(',', ':'))}"
    mac = hmac.new(base64.b64decode(LOCAL_WEBHOOK_SECRET), message.encode(), hashlib.sha256)
    headers = {
        "v-c-signature": (
            f"t={t};keyId={LOCAL_WEBHOOK_KEY_ID};sig={base64.b64encode(mac.digest()).decode()}"
        ),
        "Content-Type": "application/json",
    }
    return json.dumps(body).encode(), headers


async def test_forty_refreshes_make_one_upstream_read_and_no_503(simulator_url, sim):
    with fresh_database() as db:
        settings = facade_settings(
            db,
            simulator_url,
            database_pool_size=2,
            database_pool_timeout_seconds=1.0,
            refresh_rate_limit="1000/minute",
            reconcile_after_seconds=0,
            cybersource_read_timeout=10.0,
            cybersource_total_timeout=15.0,
        )
        with serve(create_app(settings)) as url:
            async with client_for(url) as api, client_for(url, "shop") as other:
                created = await api.post(
                    "/v1/invoices", headers=key(), json=invoice_body(sendImmediately=True)
                )
                assert created.status_code == 201, created.text
                number = created.json()["invoiceNumber"]
                slow = await add_fault(
                    sim,
                    action="latency",
                    latency_ms=3000,
                    method="GET",
                    path=f"/invoicing/v2/invoices/{number}",
                )
                first = asyncio.create_task(api.get(f"/v1/invoices/{number}?refresh=true"))
                await until(lambda: fault_hits(sim, slow), what="the first refresh's GET upstream")
                rest = [api.get(f"/v1/invoices/{number}?refresh=true") for _ in range(39)]
                # An unrelated caller reads meanwhile: the pool of two is not taken by the waiters.
                unrelated = other.get("/v1/invoices")
                answers = await asyncio.gather(first, *rest, unrelated)
                assert [a.status_code for a in answers] == [200] * 41
                assert await fault_hits(sim, slow) == 1  # one GET for all forty


async def test_refreshes_are_rate_limited_per_caller(database_url, simulator_url):
    settings = facade_settings(database_url, simulator_url, refresh_rate_limit="3/minute")
    with serve(create_app(settings)) as url:
        async with client_for(url) as api, client_for(url, "shop") as shop:
            created = await api.post("/v1/invoices", headers=key(), json=invoice_body())
            number = created.json()["invoiceNumber"]
            for _ in range(3):
                assert (await api.get(f"/v1/invoices/{number}?refresh=true")).status_code == 200
            limited = await api.get(f"/v1/invoices/{number}?refresh=true")
            assert limited.status_code == 429, limited.text
            assert limited.json()["code"] == "rate_limited"
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            assert (await api.get(f"/v1/invoices/{number}")).status_code == 200  # reads go on
            mine = await shop.post("/v1/invoices", headers=key(), json=invoice_body())
            other = mine.json()["invoiceNumber"]
            assert (await shop.get(f"/v1/invoices/{other}?refresh=true")).status_code == 200


async def test_replays_of_one_notification_make_one_upstream_read(simulator_url, sim):
    with fresh_database() as db:
        settings = facade_settings(
            db,
            simulator_url,
            reconcile_after_seconds=0,
            cybersource_read_timeout=10.0,
            cybersource_total_timeout=15.0,
        )
        with serve(create_app(settings)) as url:
            async with client_for(url) as api, httpx.AsyncClient(base_url=url) as cybersource:
                created = await api.post(
                    "/v1/invoices", headers=key(), json=invoice_body(sendImmediately=True)
                )
                assert created.status_code == 201, created.text
                number = created.json()["invoiceNumber"]
                slow = await add_fault(
                    sim,
                    action="latency",
                    latency_ms=2000,
                    method="GET",
                    path=f"/invoicing/v2/invoices/{number}",
                )
                body, headers = signed_notification(number)
                replays = [
                    cybersource.post("/v1/webhooks/cybersource", content=body, headers=headers)
                    for _ in range(30)
                ]
                answers = await asyncio.gather(*replays)
                assert {a.status_code for a in answers} == {200}
                assert await fault_hits(sim, slow) == 1
