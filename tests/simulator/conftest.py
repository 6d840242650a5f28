"""One simulator (two merchants, webhooks to a local receiver, short retries) for the whole
session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.simulator import SimulatorApp, SimulatorConfig
from tests.simulator.helpers import (
    MERCHANT_A,
    MERCHANT_B,
    RawClient,
    Receiver,
    ServerThread,
    start_simulator,
    webhook_config,
)


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    rec.url = str(server.make_url("/hook"))
    yield rec
    await server.close()


@pytest.fixture(scope="session")
def sim_server(receiver: Receiver) -> Iterator[tuple[ServerThread, SimulatorApp]]:
    config = SimulatorConfig(
        merchants=(MERCHANT_A, MERCHANT_B), webhook=webhook_config(receiver.url), hang_s=5.0
    )
    server, app = start_simulator(config)
    yield server, app
    server.stop()


@pytest.fixture(scope="session")
def base_url(sim_server: tuple[ServerThread, SimulatorApp]) -> str:
    return sim_server[0].url


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def raw(base_url: str, http: aiohttp.ClientSession, receiver: Receiver) -> RawClient:
    """A signed raw client for merchant A, on a freshly reset simulator."""
    client = RawClient(base_url, http)
    reply = await client.admin("POST", "/__sim/reset")
    assert reply.status == 200
    receiver.received.clear()
    receiver.script.clear()
    receiver.delays.clear()
    return client


@pytest.fixture
def raw_b(raw: RawClient) -> RawClient:
    return RawClient(raw.base_url, raw.session, MERCHANT_B)
