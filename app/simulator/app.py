"""`create_simulator_app(config)`: the ASGI app (Starlette routes inside a fault/logging layer)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.simulator import merchant_data as md
from app.simulator.admin import admin_routes
from app.simulator.auth import Authenticator
from app.simulator.config import SimulatorConfig
from app.simulator.encryption import Encryption
from app.simulator.faults import FaultLayer, FaultRegistry
from app.simulator.notification_api import NotificationApi, Notifications
from app.simulator.routes import InvoicingApi
from app.simulator.state import Invoice, SimulatorState, utc_now
from app.simulator.views import JSONBody, error_body, payment_link
from app.simulator.webhooks import WebhookDispatcher, invoice_event_data

MANAGEMENT_PREFIXES = ("/kms/", "/notification-subscriptions/")


class Simulator:
    """Everything one simulator instance holds; the routes close over it."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.authenticator = Authenticator(
            config.verification_keys(),
            expected_host=config.host_name,
            tolerance_s=config.clock_tolerance_s,
            clock_offset_s=config.clock_offset_s,
        )
        self.state = SimulatorState(
            [m.merchant_id for m in config.merchants], config.first_invoice_number
        )
        self.faults = FaultRegistry(config.fault_seed)
        self.faults.add(list(config.faults))
        self.webhooks = WebhookDispatcher(config.webhook)
        self.encryption = Encryption(config)
        # Keys and subscriptions made through the webhook management API (notification_api.py).
        self.notifications = Notifications()
        self._display_names = {m.merchant_id: m.display_name for m in config.merchants}
        # The last signed invoicing requests as received (method, path, merchant, body text), for
        # tests.
        self.received: deque[dict[str, Any]] = deque(maxlen=2000)

    def display_name(self, merchant_id: str) -> str | None:
        return self._display_names.get(merchant_id)

    def emit_webhook(self, event_type: str, invoice: Invoice) -> dict[str, Any] | None:
        """Notify the configured webhook and every ACTIVE subscription of the merchant that lists
        the event; returns the first delivery's record."""
        subscribed = self.notifications.targets(invoice.merchant_id, event_type)
        if self.webhooks.config is None and not subscribed:
            return None
        book = self.state.book(invoice.merchant_id)
        settings = md.read_settings(book, "INVOICING", self.display_name(invoice.merchant_id))
        data = invoice_event_data(
            invoice, event_type, settings, payment_link(invoice, self.config.payment_link_base)
        )
        records = [self.webhooks.emit(event_type, invoice.merchant_id, data)]
        records += [
            self.webhooks.emit(event_type, invoice.merchant_id, data, target=target)
            for target in subscribed
        ]
        return next((record for record in records if record is not None), None)

    def reset(self) -> None:
        """Invoices, settings, field definitions, faults and the webhook log; merchants stay."""
        self.state.reset()
        self.faults.clear()
        self.webhooks.reset()
        self.notifications.reset()
        self.received.clear()


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONBody(error_body(utc_now(), "NOTFOUND", "NOTFOUND", "Resource not found."), 404)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return JSONBody(
        error_body(utc_now(), "BADREQUEST", "INVALID_REQUEST", "Method not allowed."), status
    )


class Front:
    """Invoicing calls go to the lean signed API, webhook management to its own; admin routes,
    lifespan and stray paths to Starlette."""

    def __init__(
        self, invoicing: InvoicingApi, notifications: NotificationApi, starlette: ASGIApp
    ) -> None:
        self.invoicing = invoicing
        self.notifications = notifications
        self.starlette = starlette

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/invoicing/"):
            await self.invoicing(scope, receive, send)
        elif scope["type"] == "http" and scope["path"].startswith(MANAGEMENT_PREFIXES):
            await self.notifications(scope, receive, send)
        else:
            await self.starlette(scope, receive, send)


class SimulatorApp(FaultLayer):
    """The ASGI app handed to uvicorn; `.simulator` gives tests and the CLI the instance behind
    it."""

    def __init__(self, sim: Simulator, inner: ASGIApp) -> None:
        super().__init__(
            inner, sim.faults, hang_s=sim.config.hang_s, log_requests=sim.config.log_requests
        )
        self.simulator = sim
        self.clock_offset_s = sim.config.clock_offset_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if not self.clock_offset_s or scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        # Run uvicorn with date_header=False (the CLI does): the simulator's skewed clock dates
        # answers.
        offset = self.clock_offset_s

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                date = formatdate(time.time() + offset, usegmt=True).encode()
                message = {**message, "headers": [*message.get("headers", []), (b"date", date)]}
            await send(message)

        return await super().__call__(scope, receive, dated)


def create_simulator_app(config: SimulatorConfig) -> SimulatorApp:
    """The simulator as an ASGI app (signed API and Starlette admin routes inside the fault/log
    layer)."""
    sim = Simulator(config)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await sim.webhooks.start()
        try:
            yield
        finally:
            await sim.webhooks.close()

    starlette = Starlette(
        routes=admin_routes(sim),
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _http_error},
    )
    return SimulatorApp(sim, Front(InvoicingApi(sim), NotificationApi(sim), starlette))
