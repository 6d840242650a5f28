"""create_app(settings): routers, error handlers, and the lifespan that owns engine, clients and relay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse

from app.cybersource.client import CybersourceClients
from app.db import autocommit_reads, create_engine, plain_url
from app.events import endpoints as events
from app.http import health, problems
from app.http.deps import single_valued_query
from app.http.docs import mount_swagger_ui
from app.idempotency.executor import IdempotentExecutor
from app.invoices import endpoints as invoices
from app.invoices.service import Caller, InvoiceService
from app.merchant_config import endpoints as invoice_settings
from app.observability.logging import get_logger
from app.observability.metrics import MetricsMiddleware, metrics_endpoint
from app.outbox import endpoints as operations
from app.outbox.relay import Relay
from app.outbox.waiter import OperationWaiter
from app.settings import Settings
from app.upstream_sync import endpoints as webhooks

log = get_logger(__name__)

DESCRIPTION = """Internal REST facade in front of the Cybersource Invoicing API (v2).

Callers authenticate with `Authorization: Bearer <API key>`. Every POST and PUT needs an
`Idempotency-Key`. Mutating calls are committed to an outbox and delivered to Cybersource by the relay;
they answer with the final result, or 202 and an operation to follow. Errors are
`application/problem+json` with a stable `code`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pgbouncer=settings.database_pgbouncer,
                               pool_size=settings.database_pool_size,
                               pool_timeout=settings.database_pool_timeout_seconds)
        clients = CybersourceClients.from_settings(settings)
        listen = None if not settings.relay_listen else plain_url(settings.database_listen_url
                                                                   or settings.database_url)
        reads = autocommit_reads(engine, pgbouncer=settings.database_pgbouncer)
        waiter = OperationWaiter(reads, listen)
        await waiter.start()
        service = InvoiceService(settings, clients)
        app.state.engine, app.state.reads, app.state.clients, app.state.service = engine, reads, clients, service
        app.state.executor = IdempotentExecutor(engine, reads, settings, service, waiter)
        # Settings changes call Cybersource inside their key's transaction, holding a connection meanwhile:
        # one at a time per process, so a slow Cybersource cannot take the pool from reads.
        app.state.settings_changes = asyncio.Semaphore(1)
        stop = asyncio.Event()
        relay_task = None
        if settings.relay_in_process:
            relay_task = asyncio.create_task(Relay(engine, settings, clients).run(stop))
        log.info("api.started", relay_in_process=settings.relay_in_process,
                 merchant_profiles=sorted(settings.merchant_profiles), callers=len(app.state.callers))
        try:
            yield
        finally:
            stop.set()
            if relay_task is not None:
                await relay_task
            await waiter.stop()
            await clients.aclose()
            await engine.dispose()

    app = FastAPI(title="invoicing-gateway", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, dependencies=[Depends(single_valued_query)])
    app.state.settings = settings
    app.state.callers = {key.sha256.lower(): Caller(key.client, frozenset(key.scopes))
                         for key in settings.effective_api_keys}
    problems.install(app)
    for module in (invoices, operations, events, invoice_settings, webhooks, health):
        app.include_router(module.router)
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], tags=["health"], include_in_schema=True,
                      summary="Prometheus metrics: HTTP traffic, relay deliveries, outbox depth",
                      response_class=PlainTextResponse)
    app.add_middleware(MetricsMiddleware)
    mount_swagger_ui(app)
    return app
