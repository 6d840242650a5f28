"""create_app(settings): routers, error handlers, and the lifespan that owns engines, clients and
services."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

from app.auth.dependencies import callers_by_key_hash
from app.auth.tokens import TokenVerifier
from app.cybersource.client import CybersourceClients
from app.db import Database, listen_dsn
from app.events import endpoints as events
from app.events.service import EventService
from app.http import health, problems
from app.http.deps import register, single_valued_query
from app.http.docs import mount_swagger_ui
from app.http.edge import EdgeMiddleware
from app.http.health import Readiness
from app.idempotency.executor import IdempotentExecutor
from app.invoices import endpoints as invoices
from app.invoices.answers import command_outcome
from app.invoices.service import InvoiceService
from app.merchant_config import endpoints as invoice_settings
from app.merchant_config.fields import MerchantDefinedFieldService
from app.merchant_config.service import InvoiceSettingsService
from app.observability import tracing
from app.observability.logging import get_logger
from app.observability.metrics import MetricsMiddleware
from app.outbox import endpoints as operations
from app.outbox.service import OperationService
from app.outbox.waiter import OperationWaiter
from app.outbox.worker import run_background_jobs
from app.settings import Settings
from app.subscriptions import endpoints as subscriptions
from app.subscriptions.service import SubscriptionService
from app.upstream_sync import endpoints as webhooks
from app.upstream_sync.adoption import AdoptionService
from app.upstream_sync.credentials import CredentialCheckService
from app.upstream_sync.key_expiry import WebhookKeyMonitor
from app.upstream_sync.service import UpstreamSyncService

log = get_logger(__name__)

DESCRIPTION = """Internal REST facade in front of the Cybersource Invoicing API (v2).

Callers authenticate with `Authorization: Bearer <API key>`. Every POST and PUT needs an
`Idempotency-Key`. Mutating calls are committed to an outbox and delivered to \
Cybersource by the relay;
they answer with the final result, or 202 and an operation to follow. Errors are
`application/problem+json` with a stable `code`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    if settings.tracing_enabled:
        tracing.install(tracing.provider_from_settings(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.from_settings(settings)
        clients = CybersourceClients.from_settings(
            settings, call_observer=tracing.upstream_call if tracing.enabled() else None
        )
        waiter = OperationWaiter(database.reads, listen_dsn(settings))
        await waiter.start()
        readiness = Readiness()
        readiness.watch("operations", waiter.listener)
        key_monitor = WebhookKeyMonitor(settings)
        engine, reads = database.engine, database.reads
        executor = IdempotentExecutor(engine, reads, settings, waiter, command_outcome)
        register(
            app,
            database,
            readiness,
            InvoiceService(engine=engine, reads=reads, settings=settings, executor=executor),
            UpstreamSyncService(engine=engine, reads=reads, settings=settings, clients=clients),
            OperationService(engine=engine, reads=reads, executor=executor),
            EventService(reads=reads),
            InvoiceSettingsService(settings=settings, clients=clients, executor=executor),
            AdoptionService(engine=engine, settings=settings, clients=clients, executor=executor),
            CredentialCheckService(settings=settings, clients=clients),
            MerchantDefinedFieldService(settings=settings, clients=clients, executor=executor),
            SubscriptionService(engine=engine, reads=reads, settings=settings, executor=executor),
            key_monitor,
        )
        key_monitor.check()  # the gauge, and a warning now if a key expires within 30 days
        stop = asyncio.Event()
        background = None
        if settings.relay_in_process:
            background = asyncio.create_task(
                run_background_jobs(database, settings, clients, stop, readiness)
            )
        # Start-up objects (modules, routes, models, services) live as long as the process: frozen,
        # full collections stop walking them (under list load they were a third of the API's CPU,
        # issue 14).
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)  # fewer young collections: fewer request objects promoted
        log.info(
            "api.started",
            relay_in_process=settings.relay_in_process,
            merchant_profiles=sorted(settings.merchant_profiles),
            callers=len(app.state.callers),
        )
        try:
            yield
        finally:
            stop.set()
            if background is not None:
                await background
            await waiter.stop()
            await app.state.token_verifier.aclose()
            await clients.aclose()
            await database.dispose()
            if settings.tracing_enabled:
                tracing.uninstall()  # exports what is still buffered

    app = FastAPI(
        title="invoicing-gateway",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_on else None,
        dependencies=[Depends(single_valued_query)],
    )
    app.state.settings = settings
    app.state.services = {}
    app.state.callers = callers_by_key_hash(settings)
    app.state.token_verifier = TokenVerifier.from_settings(settings)
    problems.install(app)
    for module in (invoices, operations, events, subscriptions, invoice_settings, webhooks, health):
        app.include_router(module.router)
    app.include_router(invoice_settings.fields_router)
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.http_max_body_bytes,
        webhook_max_body_bytes=settings.webhook_max_body_bytes,
    )
    if tracing.enabled():
        app.add_middleware(tracing.TracingMiddleware)
    app.add_middleware(MetricsMiddleware)
    if settings.docs_on:
        mount_swagger_ui(app)
    return app
