"""Merchant authorization: each caller acts only for the merchant profiles its API_KEYS entry lists.

Two callers, two profiles (`default` and `eu`): another profile is 403 problem+json on every route
that takes `X-Merchant-Profile` (invoice settings included), and what belongs to a profile a caller
may not use (operations, events) is not shown, admins included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest

from app.main import create_app
from app.settings import LOCAL_KEY_ID, LOCAL_SHARED_SECRET
from tests.integration.conftest import facade_settings, invoice_body, key
from tests.support.postgres import fresh_database
from tests.support.servers import serve

CALLERS = {
    # client: (key, scopes, profiles)
    "billing": ("billing-key", ["invoices:read", "invoices:write"], ["default"]),
    "europe": ("europe-key", ["invoices:read", "invoices:write"], ["eu"]),
    "ops": ("ops-key", ["invoices:read", "invoices:write", "invoices:admin"], ["default"]),
    "both": ("both-key", ["invoices:read", "invoices:write"], ["default", "eu"]),
}
EU = {"X-Merchant-Profile": "eu"}


def api_keys() -> str:
    return json.dumps(
        [
            {
                "client": client,
                "sha256": hashlib.sha256(secret.encode()).hexdigest(),
                "scopes": scopes,
                "profiles": profiles,
            }
            for client, (secret, scopes, profiles) in CALLERS.items()
        ]
    )


@pytest.fixture(scope="module")
def facade(simulator_url: str) -> Iterator[str]:
    # A database of its own: a relay of another test's facade (without the eu profile) must not take
    # the eu commands.
    with fresh_database() as database_url:
        yield from _facade(database_url, simulator_url)


def _facade(database_url: str, simulator_url: str) -> Iterator[str]:
    eu = [
        {
            "name": "eu",
            "merchant_id": "local_merchant",
            "key_id": LOCAL_KEY_ID,
            "shared_secret": LOCAL_SHARED_SECRET,
            "base_url": simulator_url,
        }
    ]
    settings = facade_settings(
        database_url, simulator_url, api_keys=api_keys(), cybersource_profiles=json.dumps(eu)
    )
    with serve(create_app(settings)) as url:
        yield url


def as_caller(url: str, client: str) -> httpx.AsyncClient:
    secret = CALLERS[client][0]
    return httpx.AsyncClient(
        base_url=url, timeout=30, headers={"Authorization": f"Bearer {secret}"}
    )


def assert_forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "forbidden"


async def test_each_caller_acts_only_for_its_profiles(facade: str):
    async with as_caller(facade, "billing") as billing, as_caller(facade, "europe") as europe:
        mine = await billing.post("/v1/invoices", headers=key(), json=invoice_body())
        assert mine.status_code == 201, mine.text
        assert_forbidden(
            await billing.post("/v1/invoices", headers={**key(), **EU}, json=invoice_body())
        )
        theirs = await europe.post("/v1/invoices", headers={**key(), **EU}, json=invoice_body())
        assert theirs.status_code == 201, theirs.text
        assert_forbidden(await europe.post("/v1/invoices", headers=key(), json=invoice_body()))

        number = theirs.json()["invoiceNumber"]
        assert (await europe.get(f"/v1/invoices/{number}", headers=EU)).status_code == 200
        for request in (
            billing.get(f"/v1/invoices/{number}", headers=EU),
            billing.get(f"/v1/invoices/{number}?refresh=true", headers=EU),
            billing.get("/v1/invoices", headers=EU),
            billing.post(f"/v1/invoices/{number}/cancel", headers={**key(), **EU}),
            europe.get("/v1/invoices"),  # the default profile
        ):
            assert_forbidden(await request)


async def test_admins_are_bound_to_their_profiles_too(facade: str):
    async with as_caller(facade, "ops") as ops, as_caller(facade, "europe") as europe:
        created = await europe.post(
            "/v1/invoices",
            headers={**key(), **EU, "Prefer": "respond-async"},
            json=invoice_body(),
        )
        assert created.status_code == 202, created.text
        operation = created.headers["Location"].rsplit("/", 1)[1]
        number = (await europe.get(f"/v1/operations/{operation}")).json()["invoiceNumber"]

        # Invoice settings: read (reader) and change (admin), for a profile the admin may not use.
        assert_forbidden(await ops.get("/v1/invoice-settings", headers=EU))
        assert_forbidden(await ops.put("/v1/invoice-settings", headers={**key(), **EU}, json={}))
        assert (await ops.get("/v1/invoice-settings")).status_code == 200

        assert_forbidden(await ops.get(f"/v1/invoices/{number}", headers=EU))
        # Operations and events of the eu profile are not shown to an admin of default only.
        assert (await ops.get(f"/v1/operations/{operation}")).status_code == 404
        assert (await europe.get(f"/v1/operations/{operation}")).status_code == 200
        listed = (await ops.get("/v1/operations", params={"limit": 200})).json()["items"]
        assert all(item["merchantProfile"] == "default" for item in listed)
        events = (await ops.get("/v1/events", params={"limit": 500})).json()["items"]
        assert events and all(event["merchantProfile"] == "default" for event in events)
        own = (await europe.get("/v1/events", params={"limit": 500})).json()["items"]
        assert any(event["invoiceNumber"] == number for event in own)


async def test_a_caller_of_two_profiles_uses_each_and_a_key_remembers_its_profile(facade: str):
    async with as_caller(facade, "both") as both:
        headers = key()
        home = await both.post("/v1/invoices", headers=headers, json=invoice_body())
        assert home.status_code == 201, home.text
        away = await both.post("/v1/invoices", headers={**key(), **EU}, json=invoice_body())
        assert away.status_code == 201, away.text
        assert away.json()["merchantProfile"] == "eu"
        # The same Idempotency-Key under the other profile is another request: 422, not a replay.
        reused = await both.post("/v1/invoices", headers={**headers, **EU}, json=invoice_body())
        assert reused.status_code == 422, reused.text
        assert reused.json()["code"] == "idempotency_key_reused"
