"""/v1/invoice-settings through the facade to the simulator: read, change (admins), replay,
rejection, an unreachable Cybersource, and what a slow Cybersource may hold of the connection
pool."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.integration.conftest import client_for, facade_settings, key
from tests.integration.waiting import add_fault, fault_hits, until
from tests.support.servers import serve

SETTINGS_PATH = "/invoicing/v2/invoiceSettings"


@pytest.fixture
async def ops(facade_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(facade_url, "ops") as client:
        yield client


def _display_name() -> dict[str, Any]:
    return {"invoiceSettingsInformation": {"merchantDisplayName": f"Shop {uuid.uuid4().hex[:8]}"}}


async def test_readers_read_and_admins_change_the_settings(
    api: httpx.AsyncClient, ops: httpx.AsyncClient, facade_url: str
):
    body = _display_name()
    async with client_for(facade_url, "auditor") as auditor:
        assert (await auditor.get("/v1/invoice-settings")).status_code == 200
    refused = await api.put("/v1/invoice-settings", json=body, headers=key())
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    changed = await ops.put("/v1/invoice-settings", json=body, headers=key())
    assert changed.status_code == 200, changed.text
    name = body["invoiceSettingsInformation"]["merchantDisplayName"]
    read = (await api.get("/v1/invoice-settings")).json()
    assert read["invoiceSettingsInformation"]["merchantDisplayName"] == name


async def test_a_change_is_replayed_and_a_rejection_is_a_final_answer(ops: httpx.AsyncClient):
    headers = key()
    body = _display_name()
    first = await ops.put("/v1/invoice-settings", json=body, headers=headers)
    again = await ops.put("/v1/invoice-settings", json=body, headers=headers)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()

    not_an_image = base64.b64encode(b"plain text, not a picture").decode()
    bad = {"invoiceSettingsInformation": {"merchantLogo": not_an_image}}
    rejected_headers = key()
    rejected = await ops.put("/v1/invoice-settings", json=bad, headers=rejected_headers)
    assert (rejected.status_code, rejected.json()["code"]) == (422, "upstream_rejected"), (
        rejected.text
    )
    assert [e["field"] for e in rejected.json()["errors"]] == [
        "invoiceSettingsInformation.merchantLogo"
    ]
    replay = await ops.put("/v1/invoice-settings", json=bad, headers=rejected_headers)
    assert replay.status_code == 422 and replay.headers["idempotent-replayed"] == "true"


async def test_an_unreachable_cybersource_leaves_the_key_free_for_the_retry(
    ops: httpx.AsyncClient, sim: httpx.AsyncClient
):
    await add_fault(sim, method="PUT", path=SETTINGS_PATH, status=503, times=1)
    headers, body = key(), _display_name()
    failed = await ops.put("/v1/invoice-settings", json=body, headers=headers)
    assert (failed.status_code, failed.json()["code"]) == (502, "upstream_unavailable"), failed.text
    retried = await ops.put("/v1/invoice-settings", json=body, headers=headers)
    assert retried.status_code == 200, retried.text
    assert "idempotent-replayed" not in retried.headers  # it ran again


async def test_slow_settings_changes_leave_connections_for_reads(
    database_url: str, simulator_url: str, sim: httpx.AsyncClient
):
    """A settings change holds a connection while Cybersource answers; they take turns, so with a
    pool of two, reads still get one while two changes wait on a slow Cybersource."""
    settings = facade_settings(
        database_url,
        simulator_url,
        database_pool_size=2,
        database_pool_timeout_seconds=0.5,
        relay_in_process=False,
    )
    slow = await add_fault(
        sim, action="latency", latency_ms=1500, method="PUT", path=SETTINGS_PATH, times=2
    )
    with serve(create_app(settings)) as url:
        async with client_for(url, "ops") as ops:
            changes = [
                asyncio.create_task(
                    ops.put("/v1/invoice-settings", json=_display_name(), headers=key())
                )
                for _ in range(2)
            ]
            await until(
                lambda: fault_hits(sim, slow), what="the first change to wait on Cybersource"
            )
            await asyncio.sleep(0.2)  # and the second has come in behind it
            reads = [await ops.get("/v1/invoices") for _ in range(3)]
            assert [r.status_code for r in reads] == [200, 200, 200], [r.text for r in reads]
            assert [(await c).status_code for c in changes] == [200, 200]
