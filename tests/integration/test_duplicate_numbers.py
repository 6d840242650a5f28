"""A number already used at Cybersource by an invoice made elsewhere (another installation on the
same merchant) fails the create (409 invoice_number_taken); it is never taken for ours."""

from __future__ import annotations

import uuid

import httpx

from app.main import create_app
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.support.postgres import fresh_database
from tests.support.servers import serve


async def test_a_foreign_invoice_with_our_number_fails_the_create(
    api: httpx.AsyncClient, simulator_url: str
):
    number = f"DUP-{uuid.uuid4().hex[:12]}"
    elsewhere = await api.post(
        "/v1/invoices", json=invoice_body(invoiceNumber=number), headers=key()
    )
    assert elsewhere.status_code == 201, elsewhere.text
    with (
        fresh_database() as database_url,
        serve(create_app(facade_settings(database_url, simulator_url))) as url,
    ):
        async with client_for(url) as other:
            ours = invoice_body(
                invoiceNumber=number, description="A different invoice, same amount and customer"
            )
            created = await other.post("/v1/invoices", json=ours, headers=key())
            assert created.status_code == 409, created.text
            problem = created.json()
            assert problem["code"] == "invoice_number_taken"
            assert problem["upstream"]["reason"] == "DUPLICATE_RECORD"
            stored = (await other.get(f"/v1/invoices/{number}")).json()
            assert stored["sync"]["state"] == "failed"
