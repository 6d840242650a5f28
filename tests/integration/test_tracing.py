"""Tracing: one trace from the caller's request, through the outbox and the relay, to the
Cybersource call, recorded by an in-memory exporter; the trace context travels to Cybersource as
`traceparent`."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.cybersource.client import CybersourceClients
from app.main import create_app
from app.observability import tracing
from app.observability.logging import configure_logging, get_logger
from app.settings import LOCAL_KEY_ID, LOCAL_MERCHANT_ID, LOCAL_SHARED_SECRET, Settings
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.integration.waiting import until
from tests.support.postgres import fresh_database
from tests.support.servers import serve

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    tracing.install(tracing.provider_from_settings(Settings(), exporter=exported))
    try:
        yield exported
    finally:
        tracing.uninstall()


async def test_one_trace_from_the_request_through_the_relay_to_cybersource(exporter, simulator_url):
    # A database of its own: only this facade's relay (whose client traces) may deliver the command.
    with (
        fresh_database() as database_url,
        serve(create_app(facade_settings(database_url, simulator_url))) as url,
    ):
        async with client_for(url) as api:
            created = await api.post(
                "/v1/invoices",
                headers={**key(), "traceparent": TRACEPARENT, "Prefer": "respond-async"},
                json=invoice_body(),
            )
            assert created.status_code == 202, created.text
            operation = created.headers["Location"]

            async def done() -> bool:
                return (await api.get(operation)).json()["state"] == "succeeded"

            await until(done, what="the relay to deliver the create")

            def delivered() -> list:
                return [
                    s
                    for s in exporter.get_finished_spans()
                    if s.name == "cybersource POST" and s.context.trace_id == int(CALLER_TRACE, 16)
                ]

            await until(delivered, what="the Cybersource call's span")

    spans = [
        s for s in exporter.get_finished_spans() if s.context.trace_id == int(CALLER_TRACE, 16)
    ]
    by_name = {s.name: s for s in spans}
    server = by_name["POST /v1/invoices"]
    deliver = by_name["outbox.deliver create"]
    upstream = by_name["cybersource POST"]
    assert server.kind is SpanKind.SERVER and server.parent.span_id == int("00f067aa0ba902b7", 16)
    assert server.attributes["http.response.status_code"] == 202
    # The relay continued the request's trace (from the traceparent stored with the command)...
    assert deliver.parent.span_id == server.context.span_id
    # ...and the Cybersource call is a child of the delivery.
    assert upstream.kind is SpanKind.CLIENT and upstream.parent.span_id == deliver.context.span_id
    assert upstream.attributes["url.path"] == "/invoicing/v2/invoices"


async def test_the_client_sends_its_span_as_traceparent_and_logs_carry_the_trace_id(
    exporter, capsys
):
    received: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        received.append(request.headers.get("traceparent"))
        body = {"id": "INV-1", "status": "DRAFT", "invoiceInformation": {"invoiceNumber": "INV-1"}}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/invoicing/v2/invoices/INV-1", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = Settings(
        cybersource_base_url=f"http://127.0.0.1:{port}",
        cybersource_merchant_id=LOCAL_MERCHANT_ID,
        cybersource_key_id=LOCAL_KEY_ID,
        cybersource_shared_secret=LOCAL_SHARED_SECRET,
    )
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("INFO")
    clients = CybersourceClients.from_settings(settings, call_observer=tracing.upstream_call)
    try:
        with tracing.continued(TRACEPARENT, "outbox.deliver get"):
            get_logger("test.tracing").info("inside.a.span")
            await clients.default.get_invoice("INV-1")
    finally:
        await clients.aclose()
        await runner.cleanup()
        root.handlers[:], level = saved
        root.setLevel(level)
    assert received and received[0] is not None
    _, trace_id, span_id, _ = received[0].split("-")
    upstream = next(s for s in exporter.get_finished_spans() if s.name == "cybersource GET")
    assert trace_id == CALLER_TRACE
    assert int(span_id, 16) == upstream.context.span_id
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    inside = next(line for line in lines if line["event"] == "inside.a.span")
    assert inside["trace_id"] == CALLER_TRACE
