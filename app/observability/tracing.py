"""Tracing with OpenTelemetry: off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

One trace follows a change from the caller to Cybersource:

- `TracingMiddleware` continues the caller's W3C `traceparent` (or starts a trace) in a server span;
- the request's trace context is stored with its outbox command (`current_traceparent()`);
- the relay continues it when it delivers the command (`continued()`), in another process if need
  be;
- the Cybersource client calls `upstream_call()` around every request: a client span, whose
  `traceparent` is sent to Cybersource.

Log lines carry `trace_id` and `span_id` while a span is current (app/observability/logging.py).

The provider lives here, not in OpenTelemetry's process-wide global (which can be set only once):
the API and the relay install one at start (`install`), tests install one with an in-memory
exporter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from app.settings import Settings

PROPAGATOR = TraceContextTextMapPropagator()
_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def provider_from_settings(
    settings: Settings, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """The configured provider (OTLP over HTTP), or one exporting to `exporter`; None when off."""
    if exporter is None and not settings.tracing_enabled:
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.otel_traces_sampler_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        headers = _headers(settings)
        endpoint = str(settings.otel_exporter_otlp_endpoint).rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, headers=headers))
        )
    return provider


def _headers(settings: Settings) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS: `name=value,name=value` (a secret: it often holds an API key)."""
    if settings.otel_exporter_otlp_headers is None:
        return {}
    pairs = settings.otel_exporter_otlp_headers.get_secret_value().split(",")
    return {
        name.strip(): value.strip()
        for name, sep, value in (pair.partition("=") for pair in pairs)
        if sep and name.strip()
    }


def install(provider: TracerProvider | None) -> None:
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("invoicing-gateway")


def uninstall() -> None:
    if _provider is not None:
        _provider.shutdown()
    install(None)


def enabled() -> bool:
    return _tracer is not None


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to store with an outbox command (None when off)."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex while a valid span is current: what log lines carry."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


@contextlib.contextmanager
def continued(traceparent: str | None, name: str, **attributes: str) -> Iterator[None]:
    """A span continuing the trace a stored `traceparent` names (the relay delivering a command)."""
    if _tracer is None:
        yield
        return
    parent = PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    with _tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ):
        yield


@contextlib.contextmanager
def upstream_call(method: str, path: str) -> Iterator[dict[str, str]]:
    """A client span around one Cybersource call; yields the headers that carry its context."""
    if _tracer is None:
        yield {}
        return
    with _tracer.start_as_current_span(
        f"cybersource {method}",
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": method, "url.path": path.split("?", 1)[0]},
    ):
        headers: dict[str, str] = {}
        PROPAGATOR.inject(headers)
        yield headers


class TracingMiddleware:
    """A server span per request, continuing the caller's `traceparent` (plain ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = _tracer
        if scope["type"] != "http" or tracer is None:
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        method = scope.get("method", "GET")
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with tracer.start_as_current_span(
            method, context=PROPAGATOR.extract(carrier), kind=SpanKind.SERVER
        ) as span:
            try:
                await self.app(scope, receive, send_with_status)
            finally:
                # The route template (FastAPI leaves it in the scope): never the path's values.
                route = str(getattr(scope.get("route"), "path", "unmatched"))
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
