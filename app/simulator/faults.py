"""Fault injection, request logging: the outermost ASGI layer of the simulator.

A rule (JSON) matches method and path and fires either for the next `times` matching requests, with
a `probability`, or (neither given) on every match. Actions:

- `status`: answer `status` (e.g. 500/502/503, or 429 with `Retry-After`) with a Cybersource error
  body;
- `latency`: wait `latency_ms`, then answer normally (`latency_ms` also delays any other action);
- `hang`: never answer; hold the request until the client gives up or `hang_s` passes, then close;
- `drop`: close the connection without applying the request;
- `apply_then_drop`: apply the request, then close the connection instead of answering;
- `email_fails`: a create that is to be e-mailed is stored and published, but its e-mail "fails":
  Cybersource's documented 202 ACCEPTED (`spec.create-invoice.202.response.json`).

A rule with `invoice` (a glob on the invoice number) fires only for requests about matching
invoices: the number in the path, or in a create's body (read here and handed on unchanged), so
faults can be aimed at some invoices and not others.

`drop`/`apply_then_drop` take `stage`: "headers" (default: the status line and headers with a
Content-Length go out, then the connection closes before the body; the client sees a truncated
payload) or "nothing" (the connection closes before a single byte; the client sees a server
disconnect). The latter uses uvicorn's documented-in-code behaviour of closing the transport when an
ASGI app returns a value other than None. Admin routes under /__sim/ are never faulted, so faults
can always be removed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import json
import random
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.simulator.logs import log
from app.simulator.views import JSON_TYPE, dumps, error_body

ACTIONS = frozenset({"status", "latency", "hang", "drop", "apply_then_drop", "email_fails"})
STAGES = frozenset({"headers", "nothing"})
# Returned to uvicorn to make it close the connection without writing anything (see module doc).
ABORT = "connection closed on purpose by a simulator fault"
_ids = itertools.count(1)
_CORRELATION_PREFIX = str(uuid.uuid4())[:24]
_correlation_counter = itertools.count(1)


@dataclass(slots=True)
class FaultRule:
    id: str
    action: str
    method: str = "*"
    path: str | None = None
    path_regex: re.Pattern[str] | None = None
    times: int | None = None
    probability: float | None = None
    status: int | None = None
    retry_after: str | None = None
    latency_ms: float = 0.0
    hang_s: float | None = None
    stage: str = "headers"
    body: Any = None
    # Per-invoice rules: a glob on the invoice number (from the path, or a create's body).
    invoice: str | None = None
    hits: int = 0
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> FaultRule:
        if not isinstance(data, Mapping):
            raise ValueError("a fault rule must be a JSON object")
        unknown = set(data) - {
            "id",
            "action",
            "method",
            "path",
            "path_regex",
            "times",
            "probability",
            "status",
            "retry_after",
            "latency_ms",
            "hang_s",
            "stage",
            "body",
            "invoice",
        }
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        action = str(data.get("action", "status" if "status" in data else ""))
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {sorted(ACTIONS)}")
        rule = cls(
            id=str(data.get("id") or f"fault-{next(_ids)}"),
            action=action,
            method=str(data.get("method", "*")).upper(),
            path=data.get("path"),
            latency_ms=float(data.get("latency_ms", 0)),
            stage=str(data.get("stage", "headers")),
            body=data.get("body"),
        )
        if data.get("path_regex") is not None:
            try:
                rule.path_regex = re.compile(str(data["path_regex"]))
            except re.error as exc:
                raise ValueError(f"path_regex does not compile: {exc}") from exc
        if data.get("invoice") is not None:
            rule.invoice = str(data["invoice"])
            if rule.path is None and rule.path_regex is None:
                rule.path = "/invoicing/*"  # every call about that invoice
        if rule.path is None and rule.path_regex is None:
            raise ValueError("a fault rule needs `path` (glob) or `path_regex`")
        if data.get("times") is not None and data.get("probability") is not None:
            raise ValueError("give `times` or `probability`, not both")
        if data.get("times") is not None:
            rule.times = int(data["times"])
            if rule.times < 1:
                raise ValueError("times must be at least 1")
        if data.get("probability") is not None:
            rule.probability = float(data["probability"])
            if not 0.0 <= rule.probability <= 1.0:
                raise ValueError("probability must be between 0 and 1")
        if action == "status":
            rule.status = int(data.get("status", 503))
            if not 400 <= rule.status <= 599:
                raise ValueError("status must be a 4xx or 5xx code")
            if rule.status == 429 or data.get("retry_after") is not None:
                rule.retry_after = str(data.get("retry_after", 1))
        if action == "latency" and rule.latency_ms <= 0:
            raise ValueError("a latency rule needs latency_ms > 0")
        if data.get("hang_s") is not None:
            rule.hang_s = float(data["hang_s"])
        if rule.stage not in STAGES:
            raise ValueError(f"stage must be one of {sorted(STAGES)}")
        return rule

    def matches(self, method: str, path: str, invoice: str | None = None) -> bool:
        if self.method not in {"*", method}:
            return False
        if self.invoice is not None and (
            invoice is None or not fnmatch.fnmatchcase(invoice, self.invoice)
        ):
            return False
        if self.path_regex is not None:
            return self.path_regex.search(path) is not None
        return self.path is not None and fnmatch.fnmatchcase(path, self.path)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "method": self.method,
            "path": self.path,
            "path_regex": self.path_regex.pattern if self.path_regex else None,
            "remaining": self.times,
            "probability": self.probability,
            "status": self.status,
            "retry_after": self.retry_after,
            "latency_ms": self.latency_ms,
            "hang_s": self.hang_s,
            "stage": self.stage,
            "invoice": self.invoice,
            "hits": self.hits,
            "created": self.created,
        }


class FaultRegistry:
    def __init__(self, seed: int | None = None) -> None:
        self.rules: list[FaultRule] = []
        self._random = random.Random(seed)  # noqa: S311 - fault dice, not cryptography

    def add(self, data: Any) -> list[FaultRule]:
        """Parse one rule or a list of rules; all or nothing."""
        items = data if isinstance(data, list) else [data]
        rules = [FaultRule.parse(item) for item in items]
        self.rules.extend(rules)
        return rules

    def clear(self) -> None:
        self.rules.clear()

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    @property
    def per_invoice(self) -> bool:
        return any(rule.invoice is not None for rule in self.rules)

    def pick(self, method: str, path: str, invoice: str | None = None) -> FaultRule | None:
        """The first rule that fires for this request; scripted budgets are spent here."""
        for rule in self.rules:
            if not rule.matches(method, path, invoice):
                continue
            if rule.times is not None:
                if rule.times <= 0:
                    continue
                rule.times -= 1
            elif rule.probability is not None and self._random.random() >= rule.probability:
                continue
            rule.hits += 1
            return rule
        return None


# --- per-invoice rules: which invoice a request is about ------------------------------------------

_INVOICE_PATH = re.compile(r"^/invoicing/v2/invoices/([^/]+)")


async def invoice_of(method: str, path: str, receive: Receive) -> tuple[str | None, Receive]:
    """The invoice number a request is about: from its path, or from a create's body (which is read
    here and handed on unchanged through the returned `receive`)."""
    found = _INVOICE_PATH.match(path)
    if found:
        return unquote(found.group(1)), receive
    if method != "POST" or path.rstrip("/") != "/invoicing/v2/invoices":
        return None, receive
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    try:
        number = json.loads(body)["invoiceInformation"]["invoiceNumber"]
    except (ValueError, KeyError, TypeError):
        return None, replay
    return (number if isinstance(number, str) else None), replay


def default_fault_body(status: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    if status == 429:
        return error_body(now, "TOO_MANY_REQUESTS", "TOO_MANY_REQUESTS", "Too many requests.")
    if status == 503:
        return error_body(
            now, "SERVER_ERROR", "SERVICE_TIMEOUT", "Service temporarily unavailable."
        )
    if status == 504:
        return error_body(now, "SERVER_ERROR", "SERVER_TIMEOUT", "Server timeout.")
    if status >= 500:
        return error_body(now, "SERVER_ERROR", "SYSTEM_ERROR", "Error - General system failure.")
    return error_body(now, "BADREQUEST", "INVALID_REQUEST", "Injected fault.")


class FaultLayer:
    """Outermost ASGI app: applies fault rules and writes one log line per request."""

    def __init__(
        self, app: ASGIApp, registry: FaultRegistry, *, hang_s: float, log_requests: bool
    ) -> None:
        self.app = app
        self.registry = registry
        self.hang_s = hang_s
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return None
        method, path = scope["method"], scope["path"]
        invoice = None
        if self.registry.per_invoice and not path.startswith("/__sim/"):
            invoice, receive = await invoice_of(method, path, receive)
        rule = None if path.startswith("/__sim/") else self.registry.pick(method, path, invoice)
        started = time.perf_counter()
        status_seen: list[int] = []
        # Cybersource answers every call with a correlation id; clients log and quote it. A random
        # process prefix and a counter keep it unique and UUID-shaped without a uuid4() per request.
        correlation_id = f"{_CORRELATION_PREFIX}{next(_correlation_counter):012x}"

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"v-c-correlation-id", correlation_id.encode()),
                    ],
                }
            await send(message)

        result: Any = None
        if rule is None:
            await self.app(scope, receive, logged_send)
        else:
            log.info("fault applied", rule=rule.id, action=rule.action, method=method, path=path)
            result = await self._apply(rule, scope, receive, logged_send)
        if self.log_requests:
            log.info(
                "request",
                method=method,
                path=path,
                status=status_seen[0] if status_seen else None,
                merchant=scope.get("sim.merchant"),
                correlation_id=correlation_id,
                fault=rule.id if rule else None,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
        return result

    async def _apply(self, rule: FaultRule, scope: Scope, receive: Receive, send: Send) -> Any:
        if rule.latency_ms > 0:
            await asyncio.sleep(rule.latency_ms / 1000)
        if rule.action == "latency":
            await self.app(scope, receive, send)
            return None
        if rule.action == "email_fails":
            # Issue 9: the request is applied; the create handler answers 202 ACCEPTED without
            # e-mail.
            scope["sim.email_fails"] = True
            await self.app(scope, receive, send)
            return None
        if rule.action == "status":
            assert rule.status is not None
            body = dumps(rule.body if rule.body is not None else default_fault_body(rule.status))
            headers = [
                (b"content-type", JSON_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            if rule.retry_after is not None:
                headers.append((b"retry-after", rule.retry_after.encode()))
            await send({"type": "http.response.start", "status": rule.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return None
        if rule.action == "hang":
            return await self._hang(
                receive, rule.hang_s if rule.hang_s is not None else self.hang_s
            )
        if rule.action == "drop":
            start: Message = {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", JSON_TYPE.encode()), (b"content-length", b"1024")],
            }
            return await self._drop(rule.stage, start, send)
        # apply_then_drop: run the request to completion, keep the answer to ourselves.
        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.app(scope, receive, capture)
        starts = [m for m in captured if m["type"] == "http.response.start"]
        if not starts:
            return ABORT
        return await self._drop(rule.stage, starts[0], send)

    @staticmethod
    async def _drop(stage: str, start: Message, send: Send) -> Any:
        if stage == "nothing":
            return ABORT
        # Headers (with a Content-Length) go out, the body never does: uvicorn then closes the
        # connection ("ASGI callable returned without completing response").
        await send(start)
        return None

    @staticmethod
    async def _hang(receive: Receive, seconds: float) -> Any:
        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await asyncio.wait_for(until_disconnect(), timeout=seconds)
        except TimeoutError:
            return ABORT  # still connected after all that time: close without a word
        return None  # the client gave up; nothing is written to a closed connection
