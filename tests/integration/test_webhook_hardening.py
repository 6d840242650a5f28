"""Cybersource notifications: de-duplicated on what is signed, only for configured merchants, stored
without their body, and purged after the retention."""

from __future__ import annotations

import asyncpg
import httpx

from app.db import Database, plain_url
from app.main import create_app
from app.upstream_sync.purge import purge_receipts_once
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.integration.test_refresh_storms import signed_notification
from tests.integration.waiting import add_fault, fault_hits
from tests.support.postgres import fresh_database
from tests.support.servers import serve


async def test_altered_replays_of_a_notification_change_nothing(simulator_url, sim):
    with fresh_database() as db:
        settings = facade_settings(db, simulator_url, reconcile_after_seconds=0)
        with serve(create_app(settings)) as url:
            async with client_for(url) as api, httpx.AsyncClient(base_url=url) as cybersource:
                created = await api.post(
                    "/v1/invoices", headers=key(), json=invoice_body(sendImmediately=True)
                )
                number = created.json()["invoiceNumber"]
                reads = await add_fault(
                    sim, action="latency", latency_ms=1, path=f"/invoicing/v2/invoices/{number}"
                )
                body, headers = signed_notification(number)
                first = await cybersource.post(
                    "/v1/webhooks/cybersource", content=body, headers=headers
                )
                assert first.json() == {"status": "accepted", "action": "refreshed"}, first.text
                assert await fault_hits(sim, reads) == 1
                # The same signed payload under other outer ids, with padding: the same
                # notification.
                for n in range(5):
                    altered, _ = signed_notification(
                        number, notificationId=f"n-{n}", webhookId=f"w-{n}", padding="x" * 10_000
                    )
                    # Re-signing is not possible for a replayer: the original signature goes along.
                    replay = await cybersource.post(
                        "/v1/webhooks/cybersource", content=altered, headers=headers
                    )
                    assert replay.status_code == 200, replay.text
                    assert replay.json()["status"] == "duplicate"
                assert await fault_hits(sim, reads) == 1  # no re-read of Cybersource

                receipts = await _receipts(db)
                assert len(receipts) == 1
                stored = " ".join(str(value) for value in receipts[0].values())
                assert "raw_body" not in receipts[0]
                assert "example.com" not in stored and "padding" not in stored
                assert receipts[0]["merchant_profile"] == "default"


async def test_a_notification_for_an_unconfigured_merchant_is_refused(database_url, simulator_url):
    settings = facade_settings(database_url, simulator_url)
    with serve(create_app(settings)) as url:
        async with client_for(url) as api, httpx.AsyncClient(base_url=url) as cybersource:
            created = await api.post(
                "/v1/invoices", headers=key(), json=invoice_body(sendImmediately=True)
            )
            number = created.json()["invoiceNumber"]
            body, headers = signed_notification(number, organization="someone_elses_merchant")
            refused = await cybersource.post(
                "/v1/webhooks/cybersource", content=body, headers=headers
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "forbidden"
            # An envelope naming our merchant does not help: the merchant is read from what is
            # signed.
            body, headers = signed_notification(number, organization="someone_elses_merchant")
            forged = body.replace(
                b'"organizationId": "someone_elses_merchant", "payload"',
                b'"organizationId": "local_merchant", "payload"',
            )
            assert (
                await cybersource.post("/v1/webhooks/cybersource", content=forged, headers=headers)
            ).status_code == 403


async def test_receipts_are_purged_after_the_retention(database_url, simulator_url):
    settings = facade_settings(database_url, simulator_url, webhook_receipt_retention_hours=24)
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        await conn.execute(
            "INSERT INTO webhook_receipts (dedup_key, event_type, invoice_number, received_at) "
            "VALUES ('old-one', 'x', 'INV-1', now() - interval '25 hours'), "
            "('new-one', 'x', 'INV-2', now() - interval '23 hours')"
        )
        database = Database.from_settings(settings)
        try:
            await purge_receipts_once(database.engine, settings)
        finally:
            await database.dispose()
        left = {
            row["dedup_key"]
            for row in await conn.fetch(
                "SELECT dedup_key FROM webhook_receipts WHERE dedup_key IN ('old-one', 'new-one')"
            )
        }
        assert left == {"new-one"}
    finally:
        await conn.close()


async def _receipts(database_url: str) -> list[dict]:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        return [dict(row) for row in await conn.fetch("SELECT * FROM webhook_receipts")]
    finally:
        await conn.close()


async def test_rereads_caused_by_notifications_are_rate_limited_per_invoice(simulator_url):
    with fresh_database() as db:
        settings = facade_settings(db, simulator_url, webhook_rate_limit="2/minute")
        with serve(create_app(settings)) as url:
            async with client_for(url) as api, httpx.AsyncClient(base_url=url) as cybersource:
                created = await api.post(
                    "/v1/invoices", headers=key(), json=invoice_body(sendImmediately=True)
                )
                number = created.json()["invoiceNumber"]
                answers = []
                for balance in (
                    "3.00",
                    "2.00",
                    "1.00",
                ):  # three different (validly signed) notifications
                    body, headers = signed_notification(number, balance=balance)
                    answers.append(
                        await cybersource.post(
                            "/v1/webhooks/cybersource", content=body, headers=headers
                        )
                    )
                assert [a.status_code for a in answers] == [200, 200, 429]
                assert answers[2].json()["code"] == "rate_limited"
                assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
