"""Issue 9, one test per bullet: amounts without floats, one answer for unreadable bodies, limits on
pass-through bodies, Cybersource's totals rule (warn and strict), invoice numbers that never
collide, the 202 ACCEPTED create, true events for a payment review, and odd input that used to
answer 500."""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from app.main import create_app
from app.settings import LOCAL_KEY_ID, LOCAL_MERCHANT_ID, LOCAL_SHARED_SECRET
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.integration.waiting import add_fault, until
from tests.support.servers import serve


async def sent_body(sim: httpx.AsyncClient, number: str) -> Any:
    reply = await sim.get(
        "/__sim/requests", params={"method": "POST", "path": "/invoicing/v2/invoices"}
    )
    bodies = [json.loads(r["body"], parse_float=Decimal) for r in reply.json()]
    return next(
        b for b in reversed(bodies) if b["invoiceInformation"].get("invoiceNumber") == number
    )


async def events_of(api: httpx.AsyncClient, number: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await api.get("/v1/events", params={"after": after} if after else {})).json()
        items += [e for e in page["items"] if e["invoiceNumber"] == number]
        if not page["items"] or page.get("nextCursor") in (None, after):
            return items
        after = page["nextCursor"]


async def test_a_json_number_amount_never_passes_through_a_float(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    # Through a float, the JSON number 100.10 would reach Cybersource as "100.1".
    text = json.dumps(invoice_body()).replace('"100.00"', "100.10")
    created = await api.post(
        "/v1/invoices", content=text, headers={**key(), "Content-Type": "application/json"}
    )
    assert created.status_code == 201, created.text
    number = created.json()["invoiceNumber"]
    amounts = (await sent_body(sim, number))["orderInformation"]["amountDetails"]
    assert amounts["totalAmount"] == "100.10"


@pytest.mark.parametrize(
    ("content", "content_type", "where"),
    [
        (b'{"invoiceInformation": {', "application/json", True),
        (b"", "application/json", False),
        (b"\xff\xfe{}", "application/json", True),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", True),
        (
            b'{"orderInformation": {"amountDetails": {"totalAmount": NaN}}}',
            "application/json",
            True,
        ),
        (b'{"x": 1e999999999}', "application/json", False),
        (b"totalAmount=10", "application/x-www-form-urlencoded", True),
        (b"{'single': 'quotes'}", "text/plain", True),
    ],
)
async def test_every_unreadable_body_is_one_problem(
    api: httpx.AsyncClient, content: bytes, content_type: str, where: bool
):
    answer = await api.post(
        "/v1/invoices", content=content, headers={**key(), "Content-Type": content_type}
    )
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["code"] == "malformed_json"
    assert problem["errors"][0]["field"] == "body" and problem["errors"][0]["message"]
    if where:
        assert problem["errors"][0]["line"] >= 1 and problem["errors"][0]["column"] >= 1


@pytest.mark.parametrize(
    "content",
    [
        b'{"invoiceSettingsInformation": {"merchantDisplayName": "x", "extra": 1e309}}',
        b'{"invoiceSettingsInformation": {"merchantDisplayName": NaN}}',
        b'{"invoiceSettingsInformation": {"customLabels": ' + b"[" * 260 + b"]" * 260 + b"}}",
    ],
)
async def test_pass_through_settings_are_checked_before_they_are_parsed_or_stored(
    facade_url: str, content: bytes
):
    async with client_for(facade_url, "ops") as ops:
        answer = await ops.put(
            "/v1/invoice-settings",
            content=content,
            headers={**key(), "Content-Type": "application/json"},
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "malformed_json"
        assert (await ops.get("/v1/invoice-settings")).status_code == 200


async def test_pass_through_settings_with_json_numbers_are_sent_as_decimals_and_replayed(
    database_url: str,
):
    """A settings body is read without floats; its Decimals broke the idempotency fingerprint
    (json.dumps could not write them): a 500 for any number with a fraction, found by
    `CONTRACT_EXAMPLES=1000 make contract-fuzz`."""
    config = SimulatorConfig(
        merchants=(
            MerchantConfig(
                merchant_id=LOCAL_MERCHANT_ID,
                key_id=LOCAL_KEY_ID,
                shared_secret=LOCAL_SHARED_SECRET,
            ),
        ),
        log_requests=False,
    )
    content = (
        b'{"invoiceSettingsInformation": {"merchantDisplayName": "Decimals", "surchargeRate": 1.50,'
        b' "tiers": [0.1, 2.25e1], "count": 3}}'
    )
    with (
        serve(create_simulator_app(config), ready_path="/__sim/faults") as sim_url,
        serve(create_app(facade_settings(database_url, sim_url))) as url,
    ):
        async with client_for(url, "ops") as ops, httpx.AsyncClient(base_url=sim_url) as sim:
            headers = {**key(), "Content-Type": "application/json"}
            answer = await ops.put("/v1/invoice-settings", content=content, headers=headers)
            assert answer.status_code == 200, answer.text
            info = answer.json()["invoiceSettingsInformation"]
            # Sent in Cybersource's canonical form: decimal text, never through a float.
            assert (info["surchargeRate"], info["tiers"], info["count"]) == (
                "1.50",
                ["0.1", "22.5"],
                3,
            )
            received = (await sim.get("/__sim/requests", params={"method": "PUT"})).json()
            assert '"surchargeRate":"1.50"' in received[-1]["body"]
            again = await ops.put("/v1/invoice-settings", content=content, headers=headers)
            assert again.status_code == 200, again.text
            assert again.headers.get("Idempotent-Replayed") == "true"
            assert again.json() == answer.json()
            other = content.replace(b"1.50", b"1.5")
            reused = await ops.put("/v1/invoice-settings", content=other, headers=headers)
            assert (reused.status_code, reused.json()["code"]) == (
                422,
                "idempotency_key_reused",
            ), reused.text


def totals_body(total: str) -> dict[str, Any]:
    body = invoice_body(total)
    body["orderInformation"]["amountDetails"].update(subAmount="100.00", discountAmount="10.00")
    return body


async def test_totals_that_break_cybersources_rule_are_reported_not_refused(
    api: httpx.AsyncClient,
):
    created = await api.post("/v1/invoices", json=totals_body("95.00"), headers=key())
    assert created.status_code == 201, created.text
    warnings = created.json()["warnings"]
    assert [w["code"] for w in warnings] == ["totals_inconsistent"]
    assert warnings[0]["field"] == "orderInformation.amountDetails.totalAmount"
    assert "90.00" in warnings[0]["message"]
    metrics = (await api.get("/metrics")).text
    assert re.search(r'igw_invoice_warnings_total\{code="totals_inconsistent"\} [1-9]', metrics)
    # A body that follows the rule has none, and the stored invoice keeps what the answer said.
    fine = await api.post("/v1/invoices", json=totals_body("90.00"), headers=key())
    assert fine.status_code == 201 and fine.json()["warnings"] == []
    number = created.json()["invoiceNumber"]
    assert (await api.get(f"/v1/invoices/{number}")).json()["warnings"] == warnings


async def test_strict_mode_refuses_what_warn_reports(database_url: str, simulator_url: str):
    settings = facade_settings(database_url, simulator_url, invoice_totals="strict")
    with serve(create_app(settings)) as url:
        async with client_for(url) as api:
            refused = await api.post("/v1/invoices", json=totals_body("95.00"), headers=key())
            assert refused.status_code == 422, refused.text
            fields = [e["field"] for e in refused.json()["errors"]]
            assert fields == ["orderInformation.amountDetails.totalAmount"]
            ok = await api.post("/v1/invoices", json=totals_body("90.00"), headers=key())
            assert ok.status_code == 201, ok.text


async def test_allocated_numbers_are_letters_and_digits(api: httpx.AsyncClient):
    created = await api.post("/v1/invoices", json=invoice_body(), headers=key())
    assert created.status_code == 201, created.text
    number = created.json()["invoiceNumber"]
    assert re.fullmatch(r"[A-Za-z0-9]{1,20}", number), number


@pytest.mark.parametrize("number", ["INV00000099", "inv12345678", "INV123456789"])
async def test_caller_numbers_of_the_allocators_shape_are_refused(
    api: httpx.AsyncClient, number: str
):
    refused = await api.post("/v1/invoices", json=invoice_body(invoiceNumber=number), headers=key())
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "invoice_number_reserved"
    # Other shapes are the caller's to choose.
    mine = f"INV-{uuid.uuid4().hex[:8]}"
    assert (
        await api.post("/v1/invoices", json=invoice_body(invoiceNumber=mine), headers=key())
    ).status_code == 201


async def test_an_allocation_skips_numbers_taken_before_the_range_was_reserved(
    database_url: str, simulator_url: str
):
    prefix = "Z" + uuid.uuid4().hex[:6].upper()
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        last = await conn.fetchval(
            "SELECT last_value FROM invoice_number_counters WHERE merchant_profile = 'default'"
        )
    finally:
        await conn.close()
    taken = [f"{prefix}{n:08d}" for n in ((last or 0) + 1, (last or 0) + 2)]
    # An older installation (another prefix, so no reserved range over these) took the next two.
    older = facade_settings(database_url, simulator_url, invoice_number_prefix="OLD-")
    allocator = facade_settings(
        database_url, simulator_url, invoice_number_prefix=prefix, invoice_number_mode="gapless"
    )
    with serve(create_app(older)) as older_url, serve(create_app(allocator)) as url:
        async with client_for(older_url) as api:
            for number in taken:
                made = await api.post(
                    "/v1/invoices", json=invoice_body(invoiceNumber=number), headers=key()
                )
                assert made.status_code == 201, made.text
        async with client_for(url) as api:
            created = await api.post("/v1/invoices", json=invoice_body(), headers=key())
            assert created.status_code == 201, created.text
            assert created.json()["invoiceNumber"] == f"{prefix}{(last or 0) + 3:08d}"


async def test_a_create_whose_email_failed_gets_its_real_status_and_a_send_works_after(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    await add_fault(
        sim, action="email_fails", method="POST", path="/invoicing/v2/invoices", times=1
    )
    created = await api.post("/v1/invoices", json=invoice_body(sendImmediately=True), headers=key())
    assert created.status_code == 201, created.text
    invoice = created.json()
    number = invoice["invoiceNumber"]
    assert invoice["status"] == "CREATED"  # read back, never "ACCEPTED"
    assert invoice["sync"]["state"] == "in_sync"
    assert "failed to send an email" in invoice["emailFailure"]["message"]
    types = [e["type"] for e in await events_of(api, number)]
    assert types == ["invoice.created", "invoice.email_failed"]

    sent = await api.post(f"/v1/invoices/{number}/send", headers=key())
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "SENT" and sent.json()["emailFailure"] is None
    assert (await sim.get(f"/__sim/invoices/{number}")).json()["status"] == "SENT"


async def test_a_rejected_review_is_no_second_sent_or_partial_payment(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
):
    body = invoice_body("100.00", sendImmediately=True, allowPartialPayments=True)
    created = await api.post("/v1/invoices", json=body, headers=key())
    assert created.status_code == 201, created.text
    number = created.json()["invoiceNumber"]

    async def refreshed_status() -> str:
        return str((await api.get(f"/v1/invoices/{number}?refresh=true")).json()["status"])

    paid = await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "30.00"})
    assert paid.status_code == 200, paid.text
    assert await refreshed_status() == "PARTIAL"
    review = await sim.post(
        f"/__sim/invoices/{number}/payments", json={"amount": "20.00", "review": True}
    )
    assert review.status_code == 200, review.text
    assert await refreshed_status() == "PENDING"
    decided = await sim.post(
        f"/__sim/invoices/{number}/payments/pending", json={"decision": "reject"}
    )
    assert decided.status_code == 200, decided.text
    assert await refreshed_status() == "PARTIAL"
    types = [e["type"] for e in await until(lambda: events_of(api, number))]
    assert types == [
        "invoice.created",
        "invoice.partially_paid",
        "invoice.payment_pending",
        "invoice.payment_rejected",
    ]


async def test_prefer_wait_with_a_non_ascii_digit_is_ignored(api: httpx.AsyncClient):
    created = await api.post(
        "/v1/invoices",
        json=invoice_body(),
        headers={**key(), "Prefer": "wait=\u00b2".encode("latin-1")},
    )
    assert created.status_code == 201, created.text


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:00:00-14:00", "0001-01-01T00:00:00+14:00", "\uff12026-01-01"]
)
async def test_list_dates_outside_the_stores_range_are_a_400(api: httpx.AsyncClient, moment: str):
    answer = await api.get("/v1/invoices", params={"createdFrom": moment})
    assert answer.status_code == 400, answer.text
