"""Odd input schemathesis found: a NUL character (PostgreSQL stores none) in a body, a query or a
path, and a repeated query parameter. Each is the caller's error (4xx), never a 500 or a silent
guess."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.integration.conftest import client_for, invoice_body, key


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


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "parameter", "forged"),
    [
        ("/v1/events", "after", "²|1"),  # a digit to str.isdigit(), not to int()
        ("/v1/events", "after", f"{2**63}|1"),  # beyond PostgreSQL's bigint
        ("/v1/operations", "cursor", "²"),
        ("/v1/operations", "cursor", str(2**64)),
        ("/v1/invoices", "cursor", f"2026-11-25T10:00:00+00:00|{2**63}"),
        ("/v1/invoices", "cursor", "9999-12-31T23:59:59-14:00|1"),  # beyond the store's years
        ("/v1/invoices", "cursor", "2026-11-25T10:00:00|1"),  # no time zone: not one we hand out
    ],
)
async def test_a_forged_cursor_is_400_never_500(
    facade_url: str, path: str, parameter: str, forged: str
):
    async with client_for(facade_url, "ops") as admin:  # operations are listed to admins only
        answer = await admin.get(path, params={parameter: _cursor(forged)})
    assert (answer.status_code, answer.json()["code"]) == (400, "malformed_request"), answer.text
    assert "cursor" in answer.json()["detail"]
