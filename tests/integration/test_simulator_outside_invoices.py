"""The simulator's `POST /__sim/invoices`: invoices made "outside" any API client, in any status,
that a facade never saw (issue 13's adopt and import tests rely on it)."""

from __future__ import annotations

import uuid

import httpx

from tests.integration.conftest import invoice_body


async def test_outside_invoices_in_each_status(sim: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    for status, balance in (
        ("DRAFT", "100.00"),
        ("CREATED", "100.00"),
        ("SENT", "100.00"),
        ("PARTIAL", "40.00"),
        ("PAID", "0.00"),
        ("CANCELED", "100.00"),
    ):
        body = invoice_body(allowPartialPayments=True, invoiceNumber=f"OS{status[:3]}{tag}")
        made = await sim.post(
            "/__sim/invoices", json={"invoice": body, "status": status, "paidAmount": "60.00"}
        )
        assert made.status_code == 201, made.text
        [invoice] = made.json()
        assert (invoice["status"], invoice["balanceAmount"]) == (status, balance)
        history = [entry["event"] for entry in invoice["invoiceHistory"]]
        assert history[-1] in ("DRAFT", "CREATE")
    webhooks = (await sim.get("/__sim/webhooks", params={"invoiceNumber": f"OSSEN{tag}"})).json()
    assert webhooks == []  # nobody was notified of an invoice made outside


async def test_outside_invoices_in_bulk_and_backdated(sim: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    made = await sim.post(
        "/__sim/invoices",
        json={
            "invoice": invoice_body(invoiceNumber=f"BULK{tag}"),
            "count": 3,
            "createdDate": "2024-01-15T10:00:00Z",
        },
    )
    assert made.status_code == 201, made.text
    assert [i["id"] for i in made.json()] == [f"BULK{tag}-{n:04d}" for n in range(3)]
    assert {i["createdDate"] for i in made.json()} == {"2024-01-15T10:00:00Z"}


async def test_outside_invoices_refusals(sim: httpx.AsyncClient) -> None:
    number = f"REF{uuid.uuid4().hex[:8]}"
    cases = [
        ({"invoice": invoice_body(), "status": "LOST"}, 422, "INVALID_STATUS"),
        ({"invoice": invoice_body(), "count": 0}, 422, "INVALID_COUNT"),
        ({"status": "SENT"}, 400, "BAD_JSON"),
        ({"invoice": {"orderInformation": {}}}, 422, "VALIDATION_ERROR"),
    ]
    no_email = invoice_body(invoiceNumber=f"{number}N")
    del no_email["customerInformation"]["email"]
    cases.append(({"invoice": no_email, "status": "SENT"}, 422, "NO_EMAIL"))
    for body, status, code in cases:
        refused = await sim.post("/__sim/invoices", json=body)
        assert (refused.status_code, refused.json()["error"]) == (status, code), refused.text
    # A refusal stores nothing.
    assert (await sim.get(f"/__sim/invoices/{number}N")).status_code == 404
    first = await sim.post("/__sim/invoices", json={"invoice": invoice_body(invoiceNumber=number)})
    assert first.status_code == 201
    again = await sim.post("/__sim/invoices", json={"invoice": invoice_body(invoiceNumber=number)})
    assert (again.status_code, again.json()["error"]) == (409, "DUPLICATE_RECORD")
