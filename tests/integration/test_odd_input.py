"""Odd input schemathesis found: a NUL character (PostgreSQL stores none) in a body, a query or a path, and
a repeated query parameter. Each is the caller's error (4xx), never a 500 or a silent guess."""

from __future__ import annotations

import httpx

from tests.integration.conftest import invoice_body, key


async def test_a_nul_in_a_body_field_is_422_naming_the_field(api: httpx.AsyncClient):
    body = invoice_body()
    body["invoiceInformation"]["description"] = "Consulting\u0000November"
    answer = await api.post("/v1/invoices", json=body, headers=key())
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["invoiceInformation.description"]
    assert "NUL" in answer.json()["errors"][0]["message"]


async def test_a_nul_in_a_query_is_400_and_nothing_else_breaks(api: httpx.AsyncClient):
    answer = await api.get("/v1/invoices", params={"customerEmail": "a\u0000b@example.com"})
    assert (answer.status_code, answer.json()["code"]) == (400, "malformed_request"), answer.text
    assert "NUL" in answer.json()["detail"]
    assert (await api.get("/v1/invoices")).status_code == 200  # the connection went back healthy


async def test_a_nul_in_a_path_is_a_4xx(api: httpx.AsyncClient):
    answer = await api.get("/v1/invoices/INV%00X")
    assert answer.status_code in (400, 404), answer.text
    sent = await api.post("/v1/invoices/INV%00X/send", headers=key())
    assert 400 <= sent.status_code < 500, sent.text


async def test_a_repeated_query_parameter_is_400(api: httpx.AsyncClient):
    answer = await api.get(
        "/v1/invoices?customerEmail=a@example.com&customerEmail=b@example.com&limit=5"
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "malformed_request"), answer.text
    assert "customerEmail" in answer.json()["detail"]
    assert (await api.get("/v1/invoices?customerEmail=a@example.com&limit=5")).status_code == 200
