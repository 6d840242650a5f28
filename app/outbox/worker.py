"""The background work of the facade, and the `invoicing-gateway relay` process that runs it.

One entry starts every background job, each in the resilient loop of `app/kit/loops.py`: the outbox
relay delivering invoice commands to Cybersource, the push relay delivering events to subscribers
(the same loop with its own queue, handler and budget), the status reconciler (lost webhooks), and
the purges of old idempotency records and webhook receipts. `api --with-relay` runs the same jobs
inside the API process.

The standalone process has no API of its own; it serves `/livez`, `/readyz` and `/metrics` on
`RELAY_METRICS_HOST:RELAY_METRICS_PORT` for Kubernetes probes and Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from app.cybersource.client import CybersourceClients
from app.db import Database, listen_dsn
from app.http import health
from app.http.deps import register
from app.http.health import Readiness
from app.http.server import uvicorn_options
from app.idempotency.purge import purge_once
from app.invoices.delivery import CybersourceDelivery, invoice_command_relay
from app.kit.loops import run_until_stopped
from app.observability import tracing
from app.observability.logging import get_logger
from app.settings import Settings
from app.subscriptions.delivery import PushDelivery, PushSender, push_relay
from app.upstream_sync.key_expiry import WebhookKeyMonitor
from app.upstream_sync.purge import purge_receipts_once
from app.upstream_sync.reconciler import StatusReconciler

log = get_logger(__name__)


async def run_background_jobs(
    database: Database,
    settings: Settings,
    clients: CybersourceClients,
    stop: asyncio.Event,
    readiness: Readiness | None = None,
) -> None:
    """Run the relay, the reconciler and the purge until `stop`; the relay drains what it holds."""
    relay = invoice_command_relay(
        database.engine,
        settings,
        CybersourceDelivery(database.engine, settings, clients),
        listen_dsn=listen_dsn(settings),
    )
    # Push delivery: its own queue, handler, HTTP session and concurrency budget, so a slow
    # subscriber never holds up invoice commands.
    sender = PushSender(settings)
    push = push_relay(
        database.engine, settings, PushDelivery(settings, sender), listen_dsn=listen_dsn(settings)
    )
    if readiness is not None:
        readiness.watch("outbox", relay.listener)
        readiness.watch("push", push.listener)
    reconciler = StatusReconciler(database.engine, settings, clients)
    side_jobs = [
        asyncio.create_task(
            run_until_stopped(
                "idempotency.purge",
                lambda: purge_once(database.engine, settings),
                stop,
                idle_seconds=settings.housekeeping_interval_seconds,
            )
        ),
        asyncio.create_task(
            run_until_stopped(
                "webhooks.purge",
                lambda: purge_receipts_once(database.engine, settings),
                stop,
                idle_seconds=settings.housekeeping_interval_seconds,
            )
        ),
    ]
    if reconciler.enabled:
        side_jobs.append(
            asyncio.create_task(
                run_until_stopped(
                    "reconciler", reconciler.step, stop, idle_seconds=reconciler.idle_seconds
                )
            )
        )
    try:
        await asyncio.gather(relay.run(stop), push.run(stop))
    finally:
        # An invoice the reconciler held is simply checked again later; a purge batch is a
        # transaction.
        for job in side_jobs:
            job.cancel()
        await asyncio.gather(*side_jobs, return_exceptions=True)
        await sender.aclose()


def health_app(database: Database, readiness: Readiness, keys: WebhookKeyMonitor) -> FastAPI:
    """The relay process's probes and metrics: the same routes as the API's."""
    app = FastAPI(title="invoicing-gateway relay", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = {}
    register(app, database, readiness, keys)
    app.include_router(health.router)
    return app


class _ServerWithoutSignals(uvicorn.Server):
    """uvicorn captures SIGTERM and SIGINT while it serves; here the worker's own handlers
    decide."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_health(
    database: Database, settings: Settings, readiness: Readiness
) -> uvicorn.Server | None:
    if not settings.relay_metrics_port:
        return None
    config = uvicorn.Config(
        health_app(database, readiness, WebhookKeyMonitor(settings)),
        host=settings.relay_metrics_host,
        port=settings.relay_metrics_port,
        log_config=None,
        access_log=False,
        lifespan="off",
        **uvicorn_options(settings),  # the same limits as the API's (slow or oversized requests)
    )
    return _ServerWithoutSignals(config)


async def run_worker(settings: Settings) -> None:
    """`invoicing-gateway relay`: run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    database = Database.from_settings(settings)
    if settings.tracing_enabled:
        tracing.install(tracing.provider_from_settings(settings))
    clients = CybersourceClients.from_settings(
        settings, call_observer=tracing.upstream_call if tracing.enabled() else None
    )
    readiness = Readiness()
    server = await serve_health(database, settings, readiness)
    serving = None if server is None else asyncio.create_task(server.serve())
    try:
        await run_background_jobs(database, settings, clients, stop, readiness)
    finally:
        if server is not None and serving is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await serving
        await clients.aclose()
        await database.dispose()
        if settings.tracing_enabled:
            tracing.uninstall()  # exports what is still buffered
