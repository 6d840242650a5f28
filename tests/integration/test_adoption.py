"""Issue 13, part 1 over real HTTP: invoices the simulator holds but the facade never saw (made
"outside" through `POST /__sim/invoices`) are adopted by the admin route, by a notification
(WEBHOOK_ADOPT_UNKNOWN) and in bulk by `invoicing-gateway invoices import`; adopted invoices then
work like any other (routes, webhooks, the status reconciler).

The simulator and facade here are this module's own: an import lists a merchant's every invoice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import LOCAL_WEBHOOK_KEY_ID, LOCAL_WEBHOOK_SECRET
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig, WebhookConfig
from tests.integration.conftest import api_keys_json, client_for, facade_settings, invoice_body, key
from tests.integration.waiting import until
from tests.support.postgres import fresh_database
from tests.support.servers import free_port, serve

MERCHANT = "outside_merchant"
KEY_ID = "5f0c7a2e-3b1d-4c8e-9a6f-0123456789ab"
SECRET = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="


@dataclass
class Stack:
    facade_url: str
    simulator_url: str
    database_url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    facade_port, sim_port = free_port(), free_port()
    simulator_url = f"http://127.0.0.1:{sim_port}"
    overrides: dict[str, Any] = dict(
        cybersource_merchant_id=MERCHANT,
        cybersource_key_id=KEY_ID,
        cybersource_shared_secret=SECRET,
        webhook_adopt_unknown=True,
        adopt_owner="finance",
        reconcile_after_seconds=1.0,
    )
    with fresh_database("igw_adopt") as database_url:
        settings = facade_settings(database_url, simulator_url, **overrides)
        sim_config = SimulatorConfig(
            merchants=(MerchantConfig(merchant_id=MERCHANT, key_id=KEY_ID, shared_secret=SECRET),),
            webhook=WebhookConfig(
                url=f"http://127.0.0.1:{facade_port}/v1/webhooks/cybersource",
                key_id=LOCAL_WEBHOOK_KEY_ID,
                secret=LOCAL_WEBHOOK_SECRET,
                retry_delays=(0.2, 0.5, 1.0),
            ),
            log_requests=False,
        )
        with (
            serve(create_app(settings), port=facade_port) as facade_url,
            serve(
                create_simulator_app(sim_config), ready_path="/__sim/health", port=sim_port
            ) as sim_url,
        ):
            env = {
                **os.environ,
                "APP_ENV": "test",
                "DATABASE_URL": database_url,
                "CYBERSOURCE_BASE_URL": sim_url,
                "CYBERSOURCE_MERCHANT_ID": MERCHANT,
                "CYBERSOURCE_KEY_ID": KEY_ID,
                "CYBERSOURCE_SHARED_SECRET": SECRET,
                "API_KEYS": api_keys_json(),
                "ADOPT_OWNER": "finance",
                "LOG_LEVEL": "WARNING",
            }
            yield Stack(facade_url, sim_url, database_url, env)


@pytest.fixture
async def sim(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.simulator_url, timeout=10) as client:
        yield client


def outside_invoice(number: str | None = None, total: str = "80.00") -> dict[str, Any]:
    body = invoice_body(total, allowPartialPayments=True)
    if number is not None:
        body["invoiceInformation"]["invoiceNumber"] = number
    body["customerInformation"]["merchantCustomerId"] = "BC-77"
    return body


async def make_outside(sim: httpx.AsyncClient, **request: Any) -> list[dict[str, Any]]:
    made = await sim.post("/__sim/invoices", json=request)
    assert made.status_code == 201, made.text
    return made.json()


async def test_an_admin_adopts_an_invoice_made_outside(
    stack: Stack, sim: httpx.AsyncClient
) -> None:
    number = f"BC-{uuid.uuid4().hex[:10]}"
    [outside] = await make_outside(sim, invoice=outside_invoice(number), status="SENT")
    assert outside["status"] == "SENT" and outside["paymentLink"]
    async with (
        client_for(stack.facade_url, "ops") as ops,
        client_for(stack.facade_url, "billing") as billing,
    ):
        assert (await ops.get(f"/v1/invoices/{number}")).status_code == 404
        refused = await billing.post(f"/v1/invoices/{number}/adopt", headers=key(), json={})
        assert refused.status_code == 403, refused.text

        adopt_key = key()
        body = {"owner": "billing", "externalReference": f"legacy-{number}"}
        adopted = await ops.post(f"/v1/invoices/{number}/adopt", headers=adopt_key, json=body)
        assert adopted.status_code == 201, adopted.text
        invoice = adopted.json()
        assert adopted.headers["Location"] == f"/v1/invoices/{number}"
        assert (invoice["owner"], invoice["status"]) == ("billing", "SENT")
        assert invoice["sync"]["state"] == "in_sync"
        assert invoice["paymentLink"] == outside["paymentLink"]
        assert invoice["balanceAmount"] == "80.00"
        assert invoice["externalReference"] == f"legacy-{number}"
        assert invoice["customerInformation"]["merchantCustomerId"] == "BC-77"
        assert invoice["invoiceHistory"][0]["event"] == "SEND"

        replay = await ops.post(f"/v1/invoices/{number}/adopt", headers=adopt_key, json=body)
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
        again = await ops.post(f"/v1/invoices/{number}/adopt", headers=key(), json=body)
        assert again.status_code == 409 and again.json()["code"] == "invoice_already_stored"
        missing = await ops.post("/v1/invoices/NOPE-123/adopt", headers=key(), json={})
        assert missing.status_code == 404, missing.text

        # It is the owner's invoice now: found by its filters, and every route works on it.
        listed = await billing.get("/v1/invoices", params={"merchantCustomerId": "BC-77"})
        assert number in [item["invoiceNumber"] for item in listed.json()["items"]]
        resent = await billing.post(f"/v1/invoices/{number}/send", headers=key())
        assert resent.status_code == 200, resent.text
        detail = (await sim.get(f"/__sim/invoices/{number}")).json()
        assert detail["resendCount"] == 1

        events = (await billing.get("/v1/events", params={"limit": 500})).json()["items"]
        adoption = [e for e in events if e["invoiceNumber"] == number]
        assert adoption[0]["type"] == "invoice.adopted"
        assert adoption[0]["data"]["adoptedBy"] == "ops"
        assert adoption[0]["data"]["externalReference"] == f"legacy-{number}"


async def test_a_payment_of_an_adopted_invoice_reaches_the_store(
    stack: Stack, sim: httpx.AsyncClient
) -> None:
    """The webhook (and, were it lost, the reconciler) keep an adopted invoice in step."""
    number = f"BC-{uuid.uuid4().hex[:10]}"
    await make_outside(sim, invoice=outside_invoice(number), status="SENT")
    async with client_for(stack.facade_url, "ops") as ops:
        adopted = await ops.post(f"/v1/invoices/{number}/adopt", headers=key(), json={})
        assert adopted.status_code == 201, adopted.text
        assert adopted.json()["owner"] == "ops"
        paid = await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "80.00"})
        assert paid.status_code == 200, paid.text

        async def is_paid() -> bool:
            return (await ops.get(f"/v1/invoices/{number}")).json()["status"] == "PAID"

        await until(is_paid, what="the adopted invoice PAID")


async def test_the_reconciler_rereads_an_adopted_invoice(
    stack: Stack, sim: httpx.AsyncClient
) -> None:
    """A payment held for review sends no notification: only the status reconciler (every second
    here) can tell the facade that the adopted invoice is PENDING now."""
    number = f"BC-{uuid.uuid4().hex[:10]}"
    await make_outside(sim, invoice=outside_invoice(number), status="SENT")
    async with client_for(stack.facade_url, "ops") as ops:
        adopted = await ops.post(f"/v1/invoices/{number}/adopt", headers=key(), json={})
        assert adopted.status_code == 201, adopted.text
        held = await sim.post(
            f"/__sim/invoices/{number}/payments", json={"amount": "30.00", "review": True}
        )
        assert held.status_code == 200 and held.json()["webhooks"] == [], held.text

        async def pending() -> bool:
            return (await ops.get(f"/v1/invoices/{number}")).json()["status"] == "PENDING"

        await until(pending, timeout=20, what="the reconciler to see the held payment")


async def test_a_notification_about_an_unknown_invoice_adopts_it(
    stack: Stack, sim: httpx.AsyncClient
) -> None:
    """WEBHOOK_ADOPT_UNKNOWN=true: the first notification of an outside invoice brings it in."""
    number = f"BC-{uuid.uuid4().hex[:10]}"
    await make_outside(sim, invoice=outside_invoice(number), status="SENT")
    paid = await sim.post(f"/__sim/invoices/{number}/payments", json={"amount": "20.00"})
    assert paid.status_code == 200, paid.text
    async with client_for(stack.facade_url, "ops") as ops:

        async def adopted() -> dict[str, Any] | None:
            response = await ops.get(f"/v1/invoices/{number}")
            return response.json() if response.status_code == 200 else None

        invoice = await until(adopted, what="the notification to adopt the invoice")
        assert (invoice["owner"], invoice["status"]) == ("finance", "PARTIAL")
        assert invoice["balanceAmount"] == "60.00"
        deliveries = (await sim.get("/__sim/webhooks", params={"invoiceNumber": number})).json()
        assert deliveries[0]["outcome"] == "delivered"


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_import_adopts_in_bulk_resumes_and_skips_what_it_has(
    stack: Stack, sim: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:6]
    old = await make_outside(
        sim,
        invoice=outside_invoice(f"OLD{tag}"),
        status="PAID",
        count=4,
        createdDate="2024-01-15T10:00:00Z",
    )
    sent = await make_outside(sim, invoice=outside_invoice(f"NEW{tag}"), status="SENT", count=9)
    drafts = await make_outside(sim, invoice=outside_invoice(f"DRF{tag}"), count=3)
    async with client_for(stack.facade_url, "billing") as billing:
        mine = await billing.post("/v1/invoices", headers=key(), json=invoice_body())
        assert mine.status_code == 201, mine.text
    own_number = mine.json()["invoiceNumber"]

    # A first run stops early (as a crash or Ctrl-C would), the second resumes where it stood.
    name = f"import-{tag}"
    common = ("invoices", "import", "--since", "2025-01-01", "--page-size", "5", "--rate", "200")
    first = run_cli(stack, *common, "--name", name, "--max-invoices", "4")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["finished"] is False and 4 <= summary["adopted"] < 12
    assert "starting import" in first.stderr

    second = run_cli(stack, *common, "--name", name)
    assert second.returncode == 0, second.stderr
    assert f"resuming import '{name}' at offset {summary['nextOffset']}" in second.stderr
    assert "%" in second.stderr  # progress lines
    done = json.loads(second.stdout)
    assert done["finished"] is True and done["failed"] == 0
    assert done["adopted"] == 12  # the sent and the drafts; the old ones are before --since
    assert done["skipped"] == 4

    async with client_for(stack.facade_url, "ops") as ops:
        for invoice in sent + drafts:
            got = (await ops.get(f"/v1/invoices/{invoice['id']}")).json()
            assert (got["owner"], got["status"]) == ("finance", invoice["status"])
        for invoice in old:
            assert (await ops.get(f"/v1/invoices/{invoice['id']}")).status_code == 404

    # A draft was read once, however many runs and pages saw it (open invoices are also re-read by
    # the status reconciler); the facade's own invoice was not read at all.
    requests = (await sim.get("/__sim/requests", params={"method": "GET"})).json()
    reads = [r["path"].rsplit("/", 1)[-1] for r in requests if r["path"].count("/") == 4]
    for invoice in drafts:
        assert reads.count(invoice["id"]) == 1
    assert own_number not in reads

    # Once finished, the same import starts over and finds nothing new; a status filter is passed
    # on.
    again = run_cli(stack, *common, "--name", name)
    assert json.loads(again.stdout)["adopted"] == 0, again.stderr
    only_paid = run_cli(stack, "invoices", "import", "--status", "PAID", "--rate", "200")
    assert only_paid.returncode == 0, only_paid.stderr
    assert json.loads(only_paid.stdout)["adopted"] == 4


async def test_import_stops_on_an_outage_and_resumes(stack: Stack, sim: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:6]
    await make_outside(sim, invoice=outside_invoice(f"OUT{tag}"), status="CREATED", count=3)
    await sim.post(
        "/__sim/faults",
        json={
            "id": f"list-down-{tag}",
            "method": "GET",
            "path": "/invoicing/v2/invoices",
            "action": "status",
            "status": 503,
            "times": 1,
        },
    )
    name = f"outage-{tag}"
    stopped = run_cli(stack, "invoices", "import", "--name", name, "--rate", "200")
    assert stopped.returncode == 1
    assert "run it again to resume" in stopped.stderr
    resumed = run_cli(stack, "invoices", "import", "--name", name, "--rate", "200")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["finished"] is True
