"""Probes and Prometheus metrics of the live facade."""

from __future__ import annotations

import httpx

from tests.integration.conftest import KEYS, invoice_body, key


async def test_probes(facade_url: str):
    async with httpx.AsyncClient(base_url=facade_url) as client:
        assert (await client.get("/livez")).json() == {"status": "ok"}
        # Ready: the database answers and the LISTEN connections (the waiter's, the relay's) listen.
        ready = (await client.get("/readyz")).json()
        assert ready["status"] == "ok"
        assert {"operations", "outbox"} <= set(ready["listen"])
        assert set(ready["listen"].values()) == {"listening"}


async def test_metrics_name_routes_not_values_and_show_the_outbox(
    api: httpx.AsyncClient, facade_url: str
):
    number = (await api.post("/v1/invoices", json=invoice_body(), headers=key())).json()[
        "invoiceNumber"
    ]
    await api.get(f"/v1/invoices/{number}")
    async with httpx.AsyncClient(base_url=facade_url) as client:
        text = (await client.get("/metrics")).text
    assert (
        'igw_http_requests_total{method="GET",route="/v1/invoices/{invoiceNumber}",status="200"}'
        in text
    )
    assert 'igw_relay_deliveries_total{kind="create",outcome="succeeded"}' in text
    assert 'igw_outbox_commands{state="succeeded"}' in text
    assert number not in text
    assert all(secret not in text for secret in KEYS.values())
