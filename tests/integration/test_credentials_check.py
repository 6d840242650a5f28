"""Issue 13, part 5 over real HTTP: `invoicing-gateway cybersource check` and `/readyz?deep=1` sign
one cheap call per merchant profile, and name the likely cause of Cybersource's 401 from refusals
the simulator really produces: key id and merchant id swapped, a sandbox key on the production host
(two simulators: "production" does not know the key, "the sandbox" does), clocks apart (a simulator
whose clock runs 15 minutes ahead), and a secret that is not the key's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig
from tests.integration.conftest import KEYS, api_keys_json, facade_settings
from tests.support.postgres import fresh_database
from tests.support.servers import serve

MERCHANT = "check_merchant"
KEY_ID = "5f0c7a2e-3b1d-4c8e-9a6f-0123456789ab"
SECRET = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
SANDBOX_KEY_ID = "0d5e8f1a-2b3c-4d5e-8f90-abcdefabcdef"
SANDBOX_SECRET = "ISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A="


def _simulator(key_id: str, secret: str, **config: Any) -> Any:
    merchant = MerchantConfig(merchant_id=MERCHANT, key_id=key_id, shared_secret=secret)
    return create_simulator_app(
        SimulatorConfig(merchants=(merchant,), log_requests=False, host_name=None, **config)
    )


@pytest.fixture(scope="module")
def production_url() -> Iterator[str]:
    with serve(_simulator(KEY_ID, SECRET), ready_path="/__sim/health") as url:
        yield url


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with serve(_simulator(SANDBOX_KEY_ID, SANDBOX_SECRET), ready_path="/__sim/health") as url:
        yield url


@pytest.fixture(scope="module")
def skewed_url() -> Iterator[str]:
    app = _simulator(KEY_ID, SECRET, clock_offset_s=900.0)
    with serve(app, ready_path="/__sim/health", date_header=False) as url:
        yield url


def check(base_url: str, **env: str) -> tuple[int, list[dict[str, Any]], str]:
    values = {
        **os.environ,
        "APP_ENV": "test",
        "CYBERSOURCE_BASE_URL": base_url,
        "CYBERSOURCE_MERCHANT_ID": MERCHANT,
        "CYBERSOURCE_KEY_ID": KEY_ID,
        "CYBERSOURCE_SHARED_SECRET": SECRET,
        "LOG_LEVEL": "ERROR",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-m", "app", "cybersource", "check"],
        env=values,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, results, done.stderr


def test_good_credentials_pass(production_url: str) -> None:
    status, [result], _ = check(production_url)
    assert status == 0
    assert (result["ok"], result["cause"], result["status"]) == (True, "ok", 200)
    assert result["merchantId"] == MERCHANT and result["profile"] == "default"


def test_swapped_ids_are_named(production_url: str) -> None:
    status, [result], stderr = check(
        production_url, CYBERSOURCE_MERCHANT_ID=KEY_ID, CYBERSOURCE_KEY_ID=MERCHANT
    )
    assert status == 1
    assert (result["ok"], result["status"], result["cause"]) == (False, 401, "ids_swapped")
    assert "swapped" in stderr


def test_a_sandbox_key_on_the_production_host_is_named(
    production_url: str, sandbox_url: str
) -> None:
    status, [result], stderr = check(
        production_url,
        CYBERSOURCE_ENVIRONMENT="production",
        CYBERSOURCE_KEY_ID=SANDBOX_KEY_ID,
        CYBERSOURCE_SHARED_SECRET=SANDBOX_SECRET,
        CYBERSOURCE_CHECK_SANDBOX_URL=sandbox_url,
    )
    assert status == 1
    assert result["cause"] == "sandbox_key_on_production", result
    assert "sandbox" in stderr
    # The same refusal on a sandbox host is not put down to the environment.
    _, [on_test], _ = check(
        production_url,
        CYBERSOURCE_KEY_ID=SANDBOX_KEY_ID,
        CYBERSOURCE_SHARED_SECRET=SANDBOX_SECRET,
        CYBERSOURCE_CHECK_SANDBOX_URL=sandbox_url,
    )
    assert on_test["cause"] == "key_refused"


def test_clock_skew_is_named(skewed_url: str) -> None:
    status, [result], _ = check(skewed_url)
    assert status == 1
    assert result["cause"] == "clock_skew", result
    assert 850 <= result["clockSkewSeconds"] <= 950


def test_a_wrong_secret_is_a_refused_key(production_url: str) -> None:
    status, [result], _ = check(production_url, CYBERSOURCE_SHARED_SECRET=SANDBOX_SECRET)
    assert status == 1 and result["cause"] == "key_refused"


def test_unreachable_is_not_a_refusal() -> None:
    status, [result], _ = check("http://127.0.0.1:9")
    assert status == 1 and result["cause"] == "unreachable" and result["status"] is None


def _seen_from(address: str, app: Any) -> Any:
    """The facade as a caller at `address` (not loopback) reaches it: the rule for deep=1
    applies."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": (address, 40000)}
        await app(scope, receive, send)

    return asgi


async def test_readyz_deep_checks_every_profile(production_url: str) -> None:
    swapped = {
        "name": "eu",
        "merchant_id": KEY_ID,
        "key_id": MERCHANT,
        "shared_secret": SECRET,
        "base_url": production_url,
    }
    with fresh_database() as database_url:
        settings = facade_settings(
            database_url,
            production_url,
            cybersource_merchant_id=MERCHANT,
            cybersource_key_id=KEY_ID,
            cybersource_shared_secret=SECRET,
            cybersource_profiles=json.dumps([swapped]),
            api_keys=api_keys_json(),
            relay_in_process=False,
        )
        with (
            serve(create_app(settings)) as local,
            serve(_seen_from("192.0.2.50", create_app(settings))) as remote,
        ):
            async with httpx.AsyncClient(base_url=local, timeout=30) as client:
                assert (await client.get("/readyz")).status_code == 200
                # The pod itself (loopback) may ask without a credential.
                deep = await client.get("/readyz", params={"deep": "1"})
            assert deep.status_code == 503, deep.text
            by_profile = {r["profile"]: r for r in deep.json()["cybersource"]}
            assert by_profile["default"]["ok"] is True
            assert by_profile["eu"]["cause"] == "ids_swapped"
            async with httpx.AsyncClient(base_url=remote, timeout=30) as client:
                assert (await client.get("/readyz")).status_code == 200
                assert (await client.get("/readyz?deep=1")).status_code == 401
                billing = {"Authorization": f"Bearer {KEYS['billing']}"}
                assert (await client.get("/readyz?deep=1", headers=billing)).status_code == 403
                ops = {"Authorization": f"Bearer {KEYS['ops']}"}
                admin = await client.get("/readyz?deep=1", headers=ops)
                assert admin.status_code == 503 and len(admin.json()["cybersource"]) == 2
