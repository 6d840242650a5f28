"""Faults as a client sees them: the project's CybersourceClient and raw aiohttp against real
uvicorn."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from app.cybersource.client import CybersourceClient, GeneralSystemFailureError
from app.cybersource.errors import AmbiguousError, AuthenticationError, TransientError
from tests.simulator.helpers import RawClient
from tests.simulator.test_lifecycle import invoice_body, make_client

INVOICES = "/invoicing/v2/invoices"


@pytest.fixture
async def client(raw: RawClient) -> AsyncIterator[CybersourceClient]:
    async with make_client(raw.base_url, read=1.0) as c:
        yield c


async def add_fault(
    raw: RawClient, rule: dict[str, Any] | list[dict[str, Any]]
) -> list[dict[str, Any]]:
    reply = await raw.admin("POST", "/__sim/faults", rule)
    assert reply.status == 201, reply.json()
    added: list[dict[str, Any]] = reply.json()
    return added


async def count_invoices(raw: RawClient) -> int:
    return len((await raw.admin("GET", "/__sim/invoices")).json())


async def test_503_then_success(client: CybersourceClient, raw: RawClient) -> None:
    await add_fault(
        raw, {"method": "POST", "path": INVOICES, "times": 1, "action": "status", "status": 503}
    )
    with pytest.raises(TransientError) as failed:
        await client.create_invoice(invoice_body())
    assert failed.value.status == 503 and failed.value.body["status"] == "SERVER_ERROR"
    assert await count_invoices(raw) == 0  # a status fault never applies the request
    assert (await client.create_invoice(invoice_body())).status == "DRAFT"
    [rule] = (await raw.admin("GET", "/__sim/faults")).json()
    assert rule["remaining"] == 0 and rule["hits"] == 1


async def test_429_carries_retry_after(client: CybersourceClient, raw: RawClient) -> None:
    await add_fault(raw, {"path": "/invoicing/v2/*", "times": 2, "status": 429, "retry_after": 3})
    for _ in range(2):
        with pytest.raises(TransientError) as limited:
            await client.list_invoices(offset=0, limit=5)
        assert limited.value.status == 429 and limited.value.retry_after == 3.0
    with pytest.raises(
        Exception
    ) as after:  # the faults are used up: now the real 404 of an empty list
        await client.list_invoices(offset=0, limit=5)
    assert getattr(after.value, "status", None) == 404


async def test_502_general_system_failure(client: CybersourceClient, raw: RawClient) -> None:
    await add_fault(raw, {"path_regex": r"/invoices/[^/]+$", "times": 1, "status": 502})
    created = await client.create_invoice(invoice_body())  # the regex does not match the collection
    with pytest.raises(GeneralSystemFailureError):
        await client.get_invoice(str(created.id))


async def test_latency(client: CybersourceClient, raw: RawClient) -> None:
    await add_fault(
        raw,
        {
            "method": "GET",
            "path": "/invoicing/v2/invoiceSettings",
            "times": 1,
            "action": "latency",
            "latency_ms": 400,
        },
    )
    started = time.perf_counter()
    settings = await client.get_invoice_settings()
    assert time.perf_counter() - started >= 0.4 and settings.http_status == 200


async def test_hang_ends_in_a_read_timeout_and_changes_nothing(
    client: CybersourceClient, raw: RawClient
) -> None:
    invoice_id = str((await client.create_invoice(invoice_body())).id)
    await add_fault(
        raw, {"method": "POST", "path": f"{INVOICES}/*/delivery", "times": 1, "action": "hang"}
    )
    started = time.perf_counter()
    with pytest.raises(AmbiguousError):
        await client.send_invoice(invoice_id)
    assert 0.9 <= time.perf_counter() - started < 4
    assert (await client.get_invoice(invoice_id)).status == "DRAFT"


@pytest.mark.parametrize(
    ("stage", "exception"),
    [
        ("headers", aiohttp.ClientPayloadError),
        ("nothing", aiohttp.ServerDisconnectedError),
    ],
)
async def test_drop_closes_the_connection_without_applying(
    client: CybersourceClient, raw: RawClient, stage: str, exception: type[Exception]
) -> None:
    await add_fault(
        raw, {"method": "POST", "path": INVOICES, "times": 2, "action": "drop", "stage": stage}
    )
    with pytest.raises(AmbiguousError):
        await client.create_invoice(invoice_body())
    # What a bare aiohttp caller sees at each stage.
    headers = raw.sign("POST", INVOICES, b"{}")
    with pytest.raises(exception):
        async with raw.session.post(raw.base_url + INVOICES, data=b"{}", headers=headers) as resp:
            await resp.read()
    assert await count_invoices(raw) == 0


@pytest.mark.parametrize("stage", ["headers", "nothing"])
async def test_apply_then_drop_create_then_the_invoice_exists(
    client: CybersourceClient, raw: RawClient, stage: str
) -> None:
    await add_fault(
        raw,
        {
            "method": "POST",
            "path": INVOICES,
            "times": 1,
            "action": "apply_then_drop",
            "stage": stage,
        },
    )
    with pytest.raises(AmbiguousError):
        await client.create_invoice(invoice_body(number="LOST-1"))
    found = await client.get_invoice("LOST-1")
    assert found.status == "DRAFT"
    assert [h.event for h in found.invoice_history or []] == ["DRAFT"]


async def test_probability_faults(client: CybersourceClient, raw: RawClient) -> None:
    [never] = await add_fault(raw, {"path": "/invoicing/*", "probability": 0.0, "status": 500})
    for _ in range(5):
        await client.get_invoice_settings()
    await raw.send("DELETE", f"/__sim/faults/{never['id']}")
    await add_fault(raw, {"path": "/invoicing/*", "probability": 1.0, "status": 500})
    for _ in range(3):
        with pytest.raises(TransientError):
            await client.get_invoice_settings()
    assert (await raw.admin("GET", "/__sim/faults")).json()[0]["hits"] == 3


async def test_admin_routes_are_never_faulted_and_faults_can_be_cleared(raw: RawClient) -> None:
    await add_fault(raw, {"path": "*", "status": 503})
    assert (await raw.admin("GET", "/__sim/health")).status == 200
    assert (await raw.call("GET", "/invoicing/v2/invoiceSettings")).status == 503
    assert (await raw.send("DELETE", "/__sim/faults")).status == 204
    assert (await raw.call("GET", "/invoicing/v2/invoiceSettings")).status == 200


@pytest.mark.parametrize(
    "rule",
    [
        {"path": "*", "action": "explode"},
        {"action": "status", "status": 503},
        {"path": "*", "status": 200},
        {"path": "*", "status": 503, "times": 1, "probability": 0.5},
        {"path": "*", "status": 503, "probability": 2},
        {"path_regex": "(", "status": 503},
        {"path": "*", "status": 503, "colour": "red"},
        {"path": "*", "action": "drop", "stage": "halfway"},
    ],
)
async def test_invalid_rules_are_refused(raw: RawClient, rule: dict[str, Any]) -> None:
    reply = await raw.admin("POST", "/__sim/faults", rule)
    assert reply.status == 400 and reply.json()["error"] == "INVALID_FAULT"
    assert (await raw.admin("GET", "/__sim/faults")).json() == []


# --- per-invoice rules (issue 15): aimed at some invoices, not others -----------------------------


async def test_a_per_invoice_rule_fires_only_for_that_invoice(
    client: CybersourceClient, raw: RawClient
) -> None:
    await add_fault(raw, {"invoice": "FAULTY-*", "status": 503})
    # A create is matched by the number in its body (the body reaches the simulator unchanged) ...
    with pytest.raises(TransientError):
        await client.create_invoice(invoice_body(number="FAULTY-1"))
    assert (await client.create_invoice(invoice_body(number="HEALTHY-1"))).status == "DRAFT"
    assert await count_invoices(raw) == 1
    # ... every other call by the number in its path.
    with pytest.raises(TransientError):
        await client.get_invoice("FAULTY-1")
    assert (await client.get_invoice("HEALTHY-1")).status == "DRAFT"
    [rule] = (await raw.admin("GET", "/__sim/faults")).json()
    assert (rule["invoice"], rule["path"], rule["hits"]) == ("FAULTY-*", "/invoicing/*", 2)


async def test_a_per_invoice_rule_with_a_path_and_a_budget(
    client: CybersourceClient, raw: RawClient
) -> None:
    await client.create_invoice(invoice_body(number="AIMED-1"))
    await client.create_invoice(invoice_body(number="AIMED-2"))
    await add_fault(
        raw,
        {
            "invoice": "AIMED-2",
            "method": "POST",
            "path": f"{INVOICES}/*/publication",
            "times": 1,
            "action": "apply_then_drop",
        },
    )
    assert (await client.publish_invoice("AIMED-1")).status == "CREATED"  # not aimed at
    with pytest.raises(AmbiguousError):
        await client.publish_invoice("AIMED-2")
    assert (await client.get_invoice("AIMED-2")).status == "CREATED"  # applied, answer lost


# --- clock offset (issue 15): a simulator whose clock disagrees with the client's -----------------


async def test_a_clock_offset_refuses_signatures_and_dates_its_answers() -> None:
    from app.simulator import SimulatorConfig
    from tests.simulator.helpers import MERCHANT_A, start_simulator

    server, _ = start_simulator(SimulatorConfig(merchants=(MERCHANT_A,), clock_offset_s=600))
    try:
        async with make_client(server.url) as skewed:
            with pytest.raises(AuthenticationError) as refused:
                await skewed.get_invoice("ANY-1")
        skew = refused.value.clock_skew_seconds
        assert skew is not None and 590 <= skew <= 610
        assert "clock skew" in refused.value.message and "Date header" in refused.value.message
    finally:
        server.stop()
