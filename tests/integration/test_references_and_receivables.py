"""Issue 13, parts 2 and 4 over real HTTP: the caller's externalReference and metadata (stored,
filtered, shown in answers and events, never sent to Cybersource) and the receivables filters and
sorts.

Every test tags its invoices with a metadata value of its own and filters on it, so invoices other
tests made on the shared facade never get in the way.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.integration.conftest import client_for, invoice_body, key


def _body(run: str, **extra: Any) -> dict[str, Any]:
    metadata = {"run": run, **extra.pop("metadata", {})}
    total = extra.pop("total", "100.00")
    customer = extra.pop("customer", None)
    info = extra.pop("info", {})
    body = invoice_body(total, **info)
    if customer is not None:
        body["customerInformation"] = customer
    return {**body, "metadata": metadata, **extra}


async def _create(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post("/v1/invoices", json=body, headers=key())
    assert response.status_code == 201, response.text
    return response.json()


async def _numbers(api: httpx.AsyncClient, query: str) -> list[str]:
    """Every invoice number of a list query, following the cursor two at a time."""
    numbers: list[str] = []
    cursor = None
    while True:
        url = f"/v1/invoices?{query}&limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = await api.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        numbers += [item["invoiceNumber"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            return numbers


async def _sent_to_cybersource(sim: httpx.AsyncClient, number: str) -> list[str]:
    received = (await sim.get("/__sim/requests", params={"method": "POST"})).json()
    return [r["body"] for r in received if number in r["body"]]


async def test_reference_and_metadata_are_stored_shown_filtered_and_never_sent(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, facade_url: str
) -> None:
    run, reference = uuid.uuid4().hex, f"ORDER-{uuid.uuid4().hex[:10]}"
    created = await _create(
        api, _body(run, externalReference=reference, metadata={"order": "8812"})
    )
    number = created["invoiceNumber"]
    assert created["externalReference"] == reference
    assert created["metadata"] == {"run": run, "order": "8812"}

    bodies = await _sent_to_cybersource(sim, number)
    assert len(bodies) == 1
    assert reference not in bodies[0] and run not in bodies[0] and "metadata" not in bodies[0]

    # Reused by another create of the same caller: 409 before Cybersource sees anything.
    again = await api.post(
        "/v1/invoices", json=_body(run, externalReference=reference), headers=key()
    )
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "external_reference_taken"
    assert len(await _sent_to_cybersource(sim, reference)) == 0
    # Another caller has references of its own.
    async with client_for(facade_url, "shop") as shop:
        theirs = await _create(shop, _body(run, externalReference=reference))
        assert await _numbers(shop, f"externalReference={reference}") == [theirs["invoiceNumber"]]

    assert await _numbers(api, f"externalReference={reference}") == [number]
    assert await _numbers(api, f"metadata[run]={run}&metadata[order]=8812") == [number]
    assert await _numbers(api, f"metadata[run]={run}&metadata[order]=8813") == []

    events = (await api.get("/v1/events", params={"limit": 500})).json()["items"]
    mine = [e for e in events if e["invoiceNumber"] == number]
    assert mine and mine[0]["type"] == "invoice.created"
    assert mine[0]["data"]["externalReference"] == reference
    assert mine[0]["data"]["metadata"] == {"run": run, "order": "8812"}


async def test_update_keeps_replaces_or_removes_reference_and_metadata(
    api: httpx.AsyncClient,
) -> None:
    run = uuid.uuid4().hex
    first = await _create(api, _body(run, externalReference=f"A-{run}"))
    second = await _create(api, _body(run, externalReference=f"B-{run}"))
    number = first["invoiceNumber"]
    update = invoice_body("120.00")

    kept = await api.put(f"/v1/invoices/{number}", json=update, headers=key())
    assert kept.status_code == 200, kept.text
    assert kept.json()["externalReference"] == f"A-{run}"
    assert kept.json()["metadata"] == {"run": run}

    taken = await api.put(
        f"/v1/invoices/{number}",
        json={**update, "externalReference": second["externalReference"]},
        headers=key(),
    )
    assert taken.status_code == 409 and taken.json()["code"] == "external_reference_taken"

    replaced = await api.put(
        f"/v1/invoices/{number}",
        json={**update, "externalReference": None, "metadata": {"run": run, "stage": "2"}},
        headers=key(),
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["externalReference"] is None
    assert replaced.json()["metadata"] == {"run": run, "stage": "2"}
    assert await _numbers(api, f"externalReference=A-{run}") == []


async def test_limits_of_reference_and_metadata_are_refused_by_name(
    api: httpx.AsyncClient,
) -> None:
    run = uuid.uuid4().hex
    for extra, field in (
        ({"metadata": {"bad key": "x"}}, "metadata"),
        ({"metadata": {f"k{i}": "v" for i in range(21)}}, "metadata"),
        ({"metadata": {"k": "v" * 501}}, "metadata"),
        ({"metadata": {"k": 7}}, "metadata"),
        ({"externalReference": ""}, "externalReference"),
        ({"externalReference": "x" * 256}, "externalReference"),
    ):
        response = await api.post("/v1/invoices", json=_body(run, **extra), headers=key())
        assert response.status_code == 422, (extra, response.text)
        assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.text
    bad_filter = await api.get("/v1/invoices", params={"metadata[bad key]": "x"})
    assert bad_filter.status_code == 400, bad_filter.text


async def _receivables(api: httpx.AsyncClient, run: str) -> dict[str, str]:
    """Six invoices with known due dates, amounts, statuses, customers; by a short name."""
    made: dict[str, str] = {}
    plans = [
        ("overdue-sent", "2020-01-10", "300.00", "email", "Ada@Example.com", "C-1"),
        ("overdue-created", "2020-02-10", "50.00", "none", "bob@example.com", "C-2"),
        ("past-draft", "2020-03-10", "75.00", None, "ADA@example.com", "C-1"),
        ("future-sent", "2030-01-10", "1000.00", "email", "carol@example.com", "C-3"),
        ("future-draft", "2030-02-10", "10.00", None, "dave@example.com", "C-1"),
        ("canceled", "2020-04-10", "500.00", "cancel", "erin@example.com", "C-4"),
    ]
    for name, due, total, mode, email, customer_id in plans:
        info: dict[str, Any] = {"dueDate": due}
        if mode in ("email", "none"):
            info.update(sendImmediately=True, deliveryMode=mode)
        body = _body(
            run,
            total=total,
            info=info,
            customer={"name": name, "email": email, "merchantCustomerId": f"{customer_id}-{run}"},
        )
        number = (await _create(api, body))["invoiceNumber"]
        if mode == "cancel":
            canceled = await api.post(f"/v1/invoices/{number}/cancel", headers=key())
            assert canceled.status_code == 200, canceled.text
        made[name] = number
    return made


async def test_receivables_filters_and_sorts(api: httpx.AsyncClient) -> None:
    run = uuid.uuid4().hex
    n = await _receivables(api, run)
    tag = f"metadata[run]={run}"

    async def names(query: str) -> list[str]:
        by_number = {number: name for name, number in n.items()}
        return [by_number[number] for number in await _numbers(api, f"{tag}&{query}")]

    assert await names("overdue=true&sort=dueDate") == ["overdue-sent", "overdue-created"]
    assert sorted(await names("overdue=false")) == sorted(
        ["past-draft", "future-sent", "future-draft", "canceled"]
    )
    assert await names("dueDateFrom=2020-02-01&dueDateTo=2020-03-31&sort=dueDate") == [
        "overdue-created",
        "past-draft",
    ]
    assert await names("amountFrom=50&amountTo=300&sort=-amount") == [
        "overdue-sent",
        "past-draft",
        "overdue-created",
    ]
    assert await names("sort=amount") == [
        "future-draft",
        "overdue-created",
        "past-draft",
        "overdue-sent",
        "canceled",
        "future-sent",
    ]
    assert await names("sort=-dueDate") == [
        "future-draft",
        "future-sent",
        "canceled",
        "past-draft",
        "overdue-created",
        "overdue-sent",
    ]
    assert sorted(await names("status=SENT,CANCELED")) == [
        "canceled",
        "future-sent",
        "overdue-sent",
    ]
    assert sorted(await names(f"merchantCustomerId=C-1-{run}")) == [
        "future-draft",
        "overdue-sent",
        "past-draft",
    ]
    assert sorted(await names("customerEmail=aDa@EXAMPLE.com")) == ["overdue-sent", "past-draft"]


async def test_malformed_receivables_queries_are_400(api: httpx.AsyncClient) -> None:
    for query in (
        "sort=dueDate&cursor=eA",
        "status=SENT,NOPE",
        "dueDateFrom=2020-13-01",
        "amountFrom=1e3",
        "sort=name",
    ):
        response = await api.get(f"/v1/invoices?{query}")
        assert response.status_code == 400, (query, response.text)
    # A cursor of one sort is refused under another.
    run = uuid.uuid4().hex
    for _ in range(3):
        await _create(api, _body(run))
    page = (await api.get(f"/v1/invoices?metadata[run]={run}&sort=amount&limit=1")).json()
    wrong = await api.get(f"/v1/invoices?sort=dueDate&cursor={page['nextCursor']}")
    assert wrong.status_code == 400, wrong.text
