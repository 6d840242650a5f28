"""Callers authenticate with their API key; scopes decide what they may do."""

from __future__ import annotations

import httpx

from tests.integration.conftest import KEYS, client_for, invoice_body, key


async def test_missing_and_wrong_keys_are_401_problems(facade_url: str):
    async with httpx.AsyncClient(base_url=facade_url) as anonymous:
        missing = await anonymous.get("/v1/invoices")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert missing.json()["code"] == "unauthenticated"
        wrong = await anonymous.get("/v1/invoices", headers={"Authorization": "Bearer not-a-key"})
        assert wrong.status_code == 401
        assert "not-a-key" not in wrong.text
        header_key = await anonymous.get("/v1/invoices", headers={"X-API-Key": KEYS["billing"]})
        assert header_key.status_code == 200


async def test_scopes(facade_url: str):
    async with client_for(facade_url, "auditor") as auditor:
        assert (await auditor.get("/v1/invoices")).status_code == 200
        refused = await auditor.post("/v1/invoices", json=invoice_body(), headers=key())
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden"
        assert (await auditor.get("/v1/operations", params={"state": "failed"})).status_code == 403
