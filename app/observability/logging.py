"""Structured JSON logs (structlog on top of the standard library, so uvicorn's logs are JSON
too)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from app.observability.tracing import current_ids

# Keys whose values never reach a log line, whatever a caller passes in.
REDACTED_KEYS = frozenset(
    {
        "authorization",
        "signature",
        "shared_secret",
        "secret",
        "password",
        "api_key",
        "x-api-key",
        "cybersource_shared_secret",
        "webhook_secret",
    }
)


def _redact(_: object, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in REDACTED_KEYS:
            event[key] = "[redacted]"
    return event


# E-mail addresses, also percent-encoded in a query string (customerEmail=ada%40example.com).
EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(@|%40)([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# Credentials in a URL or a header someone logged: ?api_key=..., access_token=..., Bearer ....
CREDENTIAL = re.compile(
    r"((?:api[_-]?key|apikey|access_token|id_token|token|secret|password|signature|sig|key)=)"
    r"[^&\s\"';]+|(Bearer\s+)[A-Za-z0-9._~+/=-]+",
    re.IGNORECASE,
)


def mask(text: str) -> str:
    """Customer e-mails as `a***@example.com`; credentials as `[redacted]`."""
    if "@" in text or "%40" in text:
        text = EMAIL.sub(r"\1***\2\3", text)
    if "=" in text or "Bearer" in text:
        text = CREDENTIAL.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)
    return text


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


def _mask_everything(
    _: object, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The last step before a line is written: every string in it (the message, uvicorn's access
    line with its query string, a rendered exception) has e-mails and credentials masked."""
    for key, value in event.items():
        event[key] = _masked(value)
    return event


def _trace_ids(_: object, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """`trace_id` and `span_id` on every line written while a span is current (tracing on)."""
    ids = current_ids()
    if ids is not None:
        event["trace_id"], event["span_id"] = ids
    return event


def configure_logging(level: str = "INFO") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
        _trace_ids,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _mask_everything,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
