"""Privacy: a whole scenario against the real `invoicing-gateway api --with-relay` process, then
every log line it wrote and its /metrics are scanned for the customer's e-mail and the caller's
credentials.

The access log (with query strings), the relay, the webhook and the error paths all write lines
here; none may carry the e-mail (plain or percent-encoded) or the API key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.db import Database
from app.observability.logging import mask
from app.settings import (
    LOCAL_KEY_ID,
    LOCAL_MERCHANT_ID,
    LOCAL_SHARED_SECRET,
    LOCAL_WEBHOOK_KEY_ID,
    LOCAL_WEBHOOK_SECRET,
    Settings,
)
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig, WebhookConfig
from tests.integration.conftest import invoice_body, key
from tests.integration.waiting import until
from tests.support.postgres import fresh_database
from tests.support.servers import free_port, serve

EMAIL = "Privacy.Person@example.com"
API_KEY = "privacy-test-key-7d1c9e"
SECRETS = [EMAIL.lower(), "privacy.person%40example.com", "privacy.person", API_KEY]


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [secret for secret in SECRETS if secret.lower() in lowered]


async def test_no_customer_email_or_credential_in_any_log_line_or_metric(tmp_path: Path):
    api_port, sim_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    log_file = tmp_path / "api.log"
    sim_config = SimulatorConfig(
        merchants=(
            MerchantConfig(
                merchant_id=LOCAL_MERCHANT_ID,
                key_id=LOCAL_KEY_ID,
                shared_secret=LOCAL_SHARED_SECRET,
            ),
        ),
        webhook=WebhookConfig(
            url=f"{api}/v1/webhooks/cybersource",
            key_id=LOCAL_WEBHOOK_KEY_ID,
            secret=LOCAL_WEBHOOK_SECRET,
            retry_delays=(0.2, 0.5),
        ),
        log_requests=False,
    )
    keys = [
        {
            "client": "billing",
            "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
            "scopes": ["invoices:read", "invoices:write", "invoices:admin"],
        }
    ]
    with (
        fresh_database() as database_url,
        serve(create_simulator_app(sim_config), ready_path="/__sim/faults", port=sim_port) as sim,
        log_file.open("w") as log,
    ):
        env = {
            **os.environ,
            "APP_ENV": "test",
            "LOG_LEVEL": "INFO",
            "DATABASE_URL": database_url,
            "CYBERSOURCE_BASE_URL": sim,
            "API_KEYS": json.dumps(keys),
            "RELAY_POLL_INTERVAL_SECONDS": "0.2",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "api", "--port", str(api_port), "--with-relay"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            await _scenario(api, sim)
        finally:
            process.terminate()
            process.wait(timeout=30)
    lines = log_file.read_text().splitlines()
    assert any("customerEmail=P***%40example.com" in line for line in lines), (
        "the access log line with the query string was not written (nothing was scanned)"
    )
    leaked = [(line, leaks(line)) for line in lines if leaks(line)]
    assert leaked == []


async def _scenario(api: str, sim: str) -> None:
    async with (
        httpx.AsyncClient(base_url=api, timeout=30) as anonymous,
        httpx.AsyncClient(
            base_url=api, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as client,
        httpx.AsyncClient(base_url=sim, timeout=30) as simulator,
    ):
        await until(lambda: _ready(anonymous), timeout=30, what="the api to answer /readyz")
        body = invoice_body(sendImmediately=True)
        body["customerInformation"]["email"] = EMAIL
        created = await client.post("/v1/invoices", headers=key(), json=body)
        assert created.status_code == 201, created.text
        number = created.json()["invoiceNumber"]
        listed = await client.get("/v1/invoices", params={"customerEmail": EMAIL})
        assert listed.status_code == 200 and listed.json()["items"], listed.text
        # Careless callers: the key in the query string, a wrong key, an unknown route with the
        # e-mail.
        await anonymous.get("/v1/invoices", params={"api_key": API_KEY})
        await anonymous.get("/v1/invoices", headers={"Authorization": f"Bearer {API_KEY}x"})
        await client.get(f"/v1/nothing/{EMAIL}")
        await client.post("/v1/invoices", headers=key(), json={**body, "unknownField": EMAIL})
        # The payer pays: Cybersource's signed notification (its data carry the payer's e-mail).
        paid = await simulator.post(f"/__sim/invoices/{number}/payments", json={"amount": "100.00"})
        assert paid.status_code < 300, paid.text

        async def is_paid() -> bool:
            return (await client.get(f"/v1/invoices/{number}")).json()["status"] == "PAID"

        await until(is_paid, timeout=30, what="the webhook to record the payment")
        metrics = await anonymous.get("/metrics")
        assert metrics.status_code == 200
        assert leaks(metrics.text) == []


async def _ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_database_error_carries_no_statement_values(database_url: str):
    """hide_parameters, then the log masking: what a log line of the error would show has no
    customer data."""

    async def fail() -> str:
        database = Database.from_settings(Settings(database_url=database_url))
        try:
            async with database.engine.connect() as conn:
                await conn.execute(text("SELECT CAST(:email AS integer)"), {"email": EMAIL})
        except Exception as exc:
            return str(exc)
        finally:
            await database.dispose()
        pytest.fail("the statement did not fail")

    message = asyncio.run(fail())
    assert "SQL parameters hidden due to hide_parameters=True" in message
    # asyncpg's own message still quotes the value it could not encode: the log masking catches it.
    assert leaks(mask(message)) == []
