"""Prometheus metrics: HTTP traffic, relay deliveries, and the outbox's depth read at scrape time.

Labels carry route templates and outcome names only — never invoice numbers, callers' keys or
bodies.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "igw_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "igw_http_request_duration_seconds",
    "HTTP request duration",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RELAY_DELIVERIES = Counter(
    "igw_relay_deliveries_total", "Outbox commands handled by the relay", ["kind", "outcome"]
)
RECONCILER_CHECKS = Counter(
    "igw_reconciler_checks_total",
    "Open invoices re-read from Cybersource by the status reconciler",
    ["outcome"],
)
INVOICE_WARNINGS = Counter(
    "igw_invoice_warnings_total",
    "Invoice bodies accepted with a warning (totals that break Cybersource's rule), by code",
    ["code"],
)
OUTBOX_COMMANDS = Gauge(
    "igw_outbox_commands", "Outbox commands by state (read at scrape time)", ["state"]
)
OUTBOX_OLDEST_PENDING = Gauge(
    "igw_outbox_oldest_pending_seconds", "Age of the oldest unfinished command"
)


def _route(scope: Scope) -> str:
    """The matched route's template (FastAPI leaves the route in the scope), so values never become
    labels."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (plain ASGI: no per-request
    task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = _route(scope)
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
