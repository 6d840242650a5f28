"""Issue 15: when Cybersource refuses our signatures because the clocks disagree, the answer says
so.

A simulator of its own runs ten minutes ahead (`clock_offset_s`, the `--clock-offset` flag): it
refuses every signature as Cybersource would, with 401, and dates its answers with its own clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from app.main import create_app
from app.settings import LOCAL_KEY_ID, LOCAL_MERCHANT_ID, LOCAL_SHARED_SECRET
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig
from tests.integration.conftest import client_for, facade_settings, key
from tests.integration.test_outbox_relay import tagged_body
from tests.support.postgres import fresh_database
from tests.support.servers import serve


@pytest.fixture
def skewed_facade() -> Iterator[str]:
    config = SimulatorConfig(
        merchants=(MerchantConfig(LOCAL_MERCHANT_ID, LOCAL_KEY_ID, LOCAL_SHARED_SECRET),),
        log_requests=False,
        clock_offset_s=600,
    )
    # date_header=False: the simulator dates its answers itself, with its clock (as its CLI does).
    with (
        serve(create_simulator_app(config), ready_path="/__sim/faults", date_header=False) as sim,
        fresh_database() as url,
        serve(create_app(facade_settings(url, sim))) as base_url,
    ):
        yield base_url


async def test_a_clock_skew_refusal_is_named_with_the_date_header(skewed_facade: str):
    async with client_for(skewed_facade) as api:
        refused = await api.post("/v1/invoices", json=tagged_body(uuid.uuid4().hex), headers=key())
        assert refused.status_code == 502, refused.text
        problem = refused.json()
        assert problem["code"] == "upstream_clock_skew"
        assert "clock skew" in problem["detail"] and "Date header" in problem["detail"]
        assert problem["upstream"]["kind"] == "authentication"
        assert problem["upstream"]["reason"] == "CLOCK_SKEW"
        assert problem["upstream"]["status"] == 401

        # A call made while the caller waits says the same.
        settings = await api.get("/v1/invoice-settings")
        assert (settings.status_code, settings.json()["code"]) == (502, "upstream_clock_skew")
        assert "Date header" in settings.json()["detail"]
