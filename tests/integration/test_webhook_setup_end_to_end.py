"""The event path end to end, with nothing set by hand: a clean database is migrated,
`cybersource-webhooks setup` creates the signature key and the subscription at the simulator, the
facade starts with exactly what setup printed, a payer pays, the simulator's signed webhook reaches
the facade, the store records the payment, and the event is pushed to a subscribed local receiver
that verifies it with `standardwebhooks`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx

from app.main import create_app
from app.settings import LOCAL_KEY_ID, LOCAL_MERCHANT_ID, LOCAL_SHARED_SECRET, LOCAL_WEBHOOK_KEY_ID
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig
from tests.integration.conftest import facade_settings, invoice_body, key
from tests.integration.test_subscriptions import api_keys, client, receiving, subscribe
from tests.integration.waiting import until
from tests.support.postgres import fresh_database
from tests.support.receivers import Receiver
from tests.support.servers import free_port, serve

SETUP_VARIABLES = [
    "CYBERSOURCE_WEBHOOK_KEY_ID",
    "CYBERSOURCE_WEBHOOK_SECRET",
    "CYBERSOURCE_WEBHOOK_KEY_EXPIRES_AT",
]


def command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`invoicing-gateway ARGS` as a process, with none of this machine's facade settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CYBERSOURCE_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**clean, "APP_ENV": "test", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_setup_then_payment_then_signed_webhook_then_store_then_push(simulator_url):
    sim_config = SimulatorConfig(
        merchants=(MerchantConfig(LOCAL_MERCHANT_ID, LOCAL_KEY_ID, LOCAL_SHARED_SECRET),),
        log_requests=False,
    )  # no webhook target: notifications go where a subscription says
    facade_port = free_port()
    hook_url = f"http://127.0.0.1:{facade_port}/v1/webhooks/cybersource"
    receiver = Receiver()
    with (
        fresh_database(migrate=False) as db,
        serve(create_simulator_app(sim_config), ready_path="/__sim/health") as sim_url,
        receiving(receiver) as receiver_url,
    ):
        migrated = command("migrate", DATABASE_URL=db)
        assert migrated.returncode == 0, migrated.stderr

        setup = command(
            "cybersource-webhooks",
            "setup",
            "--url",
            hook_url,
            "--output",
            "env",
            CYBERSOURCE_BASE_URL=sim_url,
        )
        assert setup.returncode == 0, setup.stderr
        lines = setup.stdout.splitlines()
        assert [line.split("=", 1)[0] for line in lines] == SETUP_VARIABLES, setup.stdout
        printed = dict(line.split("=", 1) for line in lines)
        assert printed["CYBERSOURCE_WEBHOOK_KEY_ID"] != LOCAL_WEBHOOK_KEY_ID

        # Setup is idempotent: a second run reuses the subscription (and makes a fresh key).
        again = command(
            "cybersource-webhooks", "setup", "--url", hook_url, CYBERSOURCE_BASE_URL=sim_url
        )
        assert again.returncode == 0 and "reused" in again.stderr, again.stderr
        printed = dict(line.split("=", 1) for line in again.stdout.splitlines())
        listed = command("cybersource-webhooks", "list", CYBERSOURCE_BASE_URL=sim_url)
        assert len(listed.stdout.splitlines()) == 1 and '"ACTIVE"' in listed.stdout

        settings = facade_settings(
            db,
            sim_url,
            api_keys=api_keys(),
            **{name.lower(): value for name, value in printed.items()},
        )
        with serve(create_app(settings), port=facade_port) as facade_url:
            async with (
                client(facade_url, "hooks") as api,
                httpx.AsyncClient(base_url=sim_url) as sim,
            ):
                sub = await subscribe(api, receiver_url, eventTypes=["invoice.paid"])
                created = await api.post(
                    "/v1/invoices",
                    headers=key(),
                    json=invoice_body(total="80.00", sendImmediately=True),
                )
                assert created.status_code == 201, created.text
                number = created.json()["invoiceNumber"]
                paid = await sim.post(
                    f"/__sim/invoices/{number}/payments", json={"amount": "80.00"}
                )
                assert paid.status_code == 200, paid.text

                async def delivered_paid() -> dict[str, Any] | None:
                    events = [e for e in receiver.delivered_events() if e["type"] == "invoice.paid"]
                    return events[0] if events else None

                event = await until(delivered_paid, timeout=30, what="invoice.paid pushed")
                assert event["invoiceNumber"] == number
                assert receiver.delivered()[0].verifies_with(sub["secret"])
                stored = (await api.get(f"/v1/invoices/{number}")).json()
                assert stored["status"] == "PAID"

                # The notification that carried it was signed with the key setup created.
                notes = (
                    await sim.get(
                        "/__sim/webhooks",
                        params={
                            "invoiceNumber": number,
                            "eventType": "invoicing.customer.invoice.paid",
                        },
                    )
                ).json()
                assert [n["outcome"] for n in notes] == ["delivered"]
                signature = notes[0]["attempts"][-1]["signature"]
                assert f"keyId={printed['CYBERSOURCE_WEBHOOK_KEY_ID']};" in signature

                # The test notification goes through the same path and is accepted.
                tested = command(
                    "cybersource-webhooks", "test", "--url", hook_url, CYBERSOURCE_BASE_URL=sim_url
                )
                assert tested.returncode == 0, tested.stderr

                async def test_delivered() -> bool:
                    logged = (await sim.get("/__sim/webhooks")).json()
                    return any(n.get("test") and n["outcome"] == "delivered" for n in logged)

                await until(test_delivered, what="the test notification accepted")

                ready = (await api.get("/readyz")).json()
                assert "cybersourceWebhookKeys" not in ready  # a year left: nothing to warn about
                metrics = (await api.get("/metrics")).text
                assert (
                    "igw_cybersource_webhook_key_days_left{"
                    f'key_id="{printed["CYBERSOURCE_WEBHOOK_KEY_ID"]}"}}' in metrics
                )
