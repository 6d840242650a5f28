"""Every operation through the API and the relay, against the simulator over real HTTP."""

from __future__ import annotations

import re

import httpx

from tests.integration.conftest import client_for, invoice_body, key


async def _events(api: httpx.AsyncClient, number: str) -> list[str]:
    response = await api.get("/v1/events", params={"limit": 500})
    assert response.status_code == 200
    return [e["type"] for e in response.json()["items"] if e["invoiceNumber"] == number]


async def _sim_invoice(sim: httpx.AsyncClient, number: str) -> dict:
    response = await sim.get(f"/__sim/invoices/{number}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_draft_publish_send_pay_and_read_back(api: httpx.AsyncClient, sim: httpx.AsyncClient):
    created = await api.post("/v1/invoices", json=invoice_body(), headers=key())
    assert created.status_code == 201, created.text
    invoice = created.json()
    number = invoice["invoiceNumber"]
    # Issue 9: letters and digits, at most 20 characters (was "INV-00000001").
    assert re.fullmatch(r"INV[0-9]{8}", number), number
    assert created.headers["location"] == f"/v1/invoices/{number}"
    assert invoice["status"] == "DRAFT"
    assert invoice["sync"]["state"] == "in_sync"
    assert invoice["owner"] == "billing"
    assert (await _sim_invoice(sim, number))["status"] == "DRAFT"

    published = await api.post(f"/v1/invoices/{number}/publish", headers=key())
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "CREATED"
    assert published.json()["paymentLink"]

    sent = await api.post(f"/v1/invoices/{number}/send", headers=key())
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "SENT"

    paid = await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
    assert paid.status_code in (200, 201), paid.text
    refreshed = await api.get(f"/v1/invoices/{number}", params={"refresh": "true"})
    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["status"] == "PAID"
    assert body["balanceAmount"] == "0.00"
    assert any(h["event"] == "PAYMENT" for h in body["invoiceHistory"])

    local = await api.get(f"/v1/invoices/{number}")
    assert local.json()["status"] == "PAID"
    assert await _events(api, number) == [
        "invoice.created",
        "invoice.published",
        "invoice.sent",
        "invoice.paid",
    ]


async def test_create_and_send_immediately_and_created_not_sent(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    sent = await api.post("/v1/invoices", json=invoice_body(sendImmediately=True), headers=key())
    assert sent.status_code == 201, sent.text
    assert sent.json()["status"] == "SENT"
    history = (await _sim_invoice(sim, sent.json()["invoiceNumber"]))["invoiceHistory"]
    assert [h["event"] for h in history].count("SEND") == 1

    created = await api.post(
        "/v1/invoices", json=invoice_body(sendImmediately=True, deliveryMode="none"), headers=key()
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "CREATED"


async def test_update_replaces_content_and_cancel(api: httpx.AsyncClient, sim: httpx.AsyncClient):
    number = (await api.post("/v1/invoices", json=invoice_body(), headers=key())).json()[
        "invoiceNumber"
    ]
    new_body = invoice_body(total="250.00")
    new_body["invoiceInformation"]["description"] = "Consulting, December"
    updated = await api.put(f"/v1/invoices/{number}", json=new_body, headers=key())
    assert updated.status_code == 200, updated.text
    assert updated.json()["orderInformation"]["amountDetails"]["totalAmount"] in (
        "250.00",
        250.0,
        "250",
    )
    upstream = await _sim_invoice(sim, number)
    assert upstream["content"]["invoiceInformation"]["description"] == "Consulting, December"

    canceled = await api.post(f"/v1/invoices/{number}/cancel", headers=key())
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "CANCELED"
    assert (await _sim_invoice(sim, number))["status"] == "CANCELED"
    assert await _events(api, number) == ["invoice.created", "invoice.updated", "invoice.canceled"]


async def test_refused_transitions_are_409_without_calling_upstream(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    number = (
        await api.post("/v1/invoices", json=invoice_body(sendImmediately=True), headers=key())
    ).json()["invoiceNumber"]
    # SENT: publish is refused (only DRAFT publishes)
    refused = await api.post(f"/v1/invoices/{number}/publish", headers=key())
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "action_not_allowed"

    await api.post(f"/v1/invoices/{number}/cancel", headers=key())
    for action in ("send", "cancel", "publish"):
        response = await api.post(f"/v1/invoices/{number}/{action}", headers=key())
        assert response.status_code == 409, (action, response.text)
        assert response.json()["invoiceStatus"] == "CANCELED"
    update = await api.put(f"/v1/invoices/{number}", json=invoice_body(), headers=key())
    assert update.status_code == 409

    paid_number = (
        await api.post("/v1/invoices", json=invoice_body(sendImmediately=True), headers=key())
    ).json()["invoiceNumber"]
    await sim.post(f"/__sim/invoices/{paid_number}/payments", json={"amount": "100.00"})
    await api.get(f"/v1/invoices/{paid_number}", params={"refresh": "true"})
    for action in ("send", "cancel"):
        response = await api.post(f"/v1/invoices/{paid_number}/{action}", headers=key())
        assert response.status_code == 409, (action, response.text)
    history = (await _sim_invoice(sim, paid_number))["invoiceHistory"]
    assert [h["event"] for h in history].count("CANCEL") == 0


async def test_upstream_refusal_when_local_state_is_stale(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    """Paid behind the facade's back (no refresh): Cybersource's ACTION_NOT_ALLOWED comes back as
    409."""
    number = (
        await api.post("/v1/invoices", json=invoice_body(sendImmediately=True), headers=key())
    ).json()["invoiceNumber"]
    await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
    response = await api.post(f"/v1/invoices/{number}/cancel", headers=key())
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["code"] == "action_not_allowed"
    assert problem["upstream"]["kind"] == "rejected"
    operation = (await api.get(f"/v1/operations/{problem['operationId']}")).json()
    assert operation["state"] == "failed"
    invoice = (await api.get(f"/v1/invoices/{number}")).json()
    assert invoice["sync"]["state"] == "failed"
    assert invoice["sync"]["lastError"]["kind"] == "rejected"
    assert "invoice.failed" in await _events(api, number)


async def test_caller_supplied_number_is_checked_and_never_reused(api: httpx.AsyncClient):
    body = invoice_body(invoiceNumber="ACME-2026-0001")
    first = await api.post("/v1/invoices", json=body, headers=key())
    assert first.status_code == 201, first.text
    assert first.json()["invoiceNumber"] == "ACME-2026-0001"
    second = await api.post("/v1/invoices", json=body, headers=key())
    assert second.status_code == 409
    assert second.json()["code"] == "invoice_number_taken"
    bad = await api.post(
        "/v1/invoices", json=invoice_body(invoiceNumber="has space"), headers=key()
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "invoiceInformation.invoiceNumber"


async def test_list_filters_owner_and_pagination(facade_url: str, api: httpx.AsyncClient):
    async with client_for(facade_url, "shop") as shop:
        mine = [
            (await shop.post("/v1/invoices", json=invoice_body(), headers=key())).json()[
                "invoiceNumber"
            ]
            for _ in range(3)
        ]
        page = await shop.get("/v1/invoices", params={"limit": 2})
        assert page.status_code == 200
        first = page.json()
        assert [i["invoiceNumber"] for i in first["items"]] == mine[::-1][:2]
        rest = await shop.get("/v1/invoices", params={"limit": 2, "cursor": first["nextCursor"]})
        assert [i["invoiceNumber"] for i in rest.json()["items"]] == mine[:1]
        assert rest.json()["nextCursor"] is None
        # billing cannot see shop's invoices
        hidden = await api.get(f"/v1/invoices/{mine[0]}")
        assert hidden.status_code == 404
    drafts = await api.get(
        "/v1/invoices", params={"status": "DRAFT", "customerEmail": "tanya.lee@example.com"}
    )
    assert all(i["owner"] == "billing" and i["status"] == "DRAFT" for i in drafts.json()["items"])
    async with client_for(facade_url, "ops") as ops:
        by_owner = await ops.get("/v1/invoices", params={"owner": "shop"})
        assert {i["owner"] for i in by_owner.json()["items"]} == {"shop"}
