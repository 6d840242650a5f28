"""Integration fixtures: a fresh migrated database, the simulator and the facade, all over real
HTTP."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import LOCAL_KEY_ID, LOCAL_MERCHANT_ID, LOCAL_SHARED_SECRET, Settings
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig
from tests.support.postgres import fresh_database
from tests.support.servers import serve

KEYS = {
    "billing": "billing-test-key",
    "shop": "shop-test-key",
    "ops": "ops-test-key",
    "auditor": "auditor-test-key",
}
SCOPES = {
    "billing": ["invoices:read", "invoices:write"],
    "shop": ["invoices:read", "invoices:write"],
    "ops": ["invoices:read", "invoices:write", "invoices:admin"],
    "auditor": ["invoices:read"],
}


def api_keys_json() -> str:
    return json.dumps(
        [
            {"client": c, "sha256": hashlib.sha256(k.encode()).hexdigest(), "scopes": SCOPES[c]}
            for c, k in KEYS.items()
        ]
    )


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    config = SimulatorConfig(
        merchants=(
            MerchantConfig(
                merchant_id=LOCAL_MERCHANT_ID,
                key_id=LOCAL_KEY_ID,
                shared_secret=LOCAL_SHARED_SECRET,
            ),
        ),
        log_requests=False,
        hang_s=30.0,
    )
    with serve(create_simulator_app(config), ready_path="/__sim/faults") as url:
        yield url


def facade_settings(database_url: str, simulator_url: str, **overrides: Any) -> Settings:
    # Facades on fresh databases share the session's simulator: a prefix of their own keeps their
    # invoice numbers from meeting another facade's invoices there.
    values: dict[str, Any] = dict(
        invoice_number_prefix=f"T{uuid.uuid4().hex[:6]}-",
        app_env="test",
        database_url=database_url,
        cybersource_base_url=simulator_url,
        api_keys=api_keys_json(),
        relay_in_process=True,
        relay_poll_interval_seconds=0.2,
        relay_backoff_base_seconds=0.05,
        relay_backoff_cap_seconds=0.5,
        request_wait_seconds=10,
        cybersource_read_timeout=2.0,
        cybersource_total_timeout=5.0,
        log_level="WARNING",
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def facade_url(database_url: str, simulator_url: str) -> Iterator[str]:
    # The one facade with the default prefix: tests read the default numbering from it.
    with serve(
        create_app(facade_settings(database_url, simulator_url, invoice_number_prefix="INV"))
    ) as url:
        yield url


@pytest.fixture
async def sim(simulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator_url, timeout=10) as client:
        yield client
        await client.delete("/__sim/faults")


def client_for(base_url: str, who: str = "billing") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {KEYS[who]}"}
    )


@pytest.fixture
async def api(facade_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(facade_url) as client:
        yield client


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def invoice_body(total: str = "100.00", **info: Any) -> dict[str, Any]:
    return {
        "customerInformation": {"name": "Tanya Lee", "email": "tanya.lee@example.com"},
        "invoiceInformation": {
            "description": "Consulting, November",
            "dueDate": "2026-12-31",
            "deliveryMode": "email",
            **info,
        },
        "orderInformation": {"amountDetails": {"totalAmount": total, "currency": "USD"}},
    }
