"""The signed Cybersource invoicing routes (same paths, status codes and bodies as the spec).

These routes carry the load (thousands of signed calls per second on one core), so they bypass
Starlette's router and middleware: a table keyed by the path's shape picks the handler, the body is
read straight from ASGI, and the answer goes out as two ASGI messages. Admin routes and 404s stay on
Starlette.

Each handler is synchronous after authentication and body parsing: state changes never straddle an
await, so concurrent requests on the one event loop cannot interleave inside a transition.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from app.cybersource.signing import SignatureInvalid
from app.simulator import merchant_data as md
from app.simulator.auth import request_target
from app.simulator.encryption import MleRefused, seal
from app.simulator.logs import log
from app.simulator.state import (
    LIST_FILTERS,
    PENDING,
    InvoiceProblem,
    MerchantBook,
    Outcome,
    utc_now,
)
from app.simulator.validation import INVALID, MISSING, ValidationFailed, validate_invoice
from app.simulator.views import (
    AUTH_FAILED_BODY,
    JSON_TYPE,
    dumps,
    error_body,
    render_invoice,
    render_list,
    submit_time,
)

if TYPE_CHECKING:
    from app.simulator.app import Simulator

MAX_LIST_LIMIT = 1000
ACTIONS = frozenset({"delivery", "cancelation", "publication"})
JSON_HEADERS = [(b"content-type", JSON_TYPE.encode())]


@dataclass(slots=True)
class Call:
    """One authenticated request: whose book it touches, its parsed parts, and one clock reading."""

    scope: Scope
    params: dict[str, str]
    merchant_id: str
    book: MerchantBook
    raw_body: bytes
    now: datetime

    def json(self) -> Any:
        if not self.raw_body.strip():
            return {}
        try:
            return json.loads(self.raw_body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationFailed([{"field": "body", "reason": INVALID}]) from exc

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.scope["query_string"].decode("latin-1"), keep_blank_values=True))


Reply = tuple[int, Any]  # status and a JSON-able body (None: no body)
Handler = Callable[[Call], Reply]


def route_key(path: str) -> tuple[str, dict[str, str]] | None:
    """The shape of an /invoicing/v2/ path and its parameters, e.g. ("invoice-action", {"id",
    "action"})."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "invoicing" or parts[2] != "v2" or "" in parts[3:]:
        return None
    rest = parts[3:]
    if rest[0] == "invoices":
        if len(rest) == 1:
            return "invoices", {}
        if len(rest) == 2:
            return "invoice", {"id": rest[1]}
        if len(rest) == 3 and rest[2] in ACTIONS:
            return rest[2], {"id": rest[1]}
        return None
    if rest == ["invoiceSettings"]:
        return "settings", {}
    if len(rest) in (2, 3) and rest[1] == "merchantDefinedFields":
        params = {"referenceType": rest[0]}
        if len(rest) == 3:
            params["id"] = rest[2]
            return "field", params
        return "fields", params
    return None


class InvoicingApi:
    """ASGI app for /invoicing/v2/: authenticate, dispatch, answer in Cybersource's shapes."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        h = Handlers(sim)
        self.table: dict[tuple[str, str], Handler] = {
            ("invoices", "POST"): h.create_invoice,
            ("invoices", "GET"): h.list_invoices,
            ("invoice", "GET"): h.get_invoice,
            ("invoice", "PUT"): h.update_invoice,
            ("delivery", "POST"): h.send,
            ("cancelation", "POST"): h.cancel,
            ("publication", "POST"): h.publish,
            ("settings", "GET"): h.get_settings,
            ("settings", "PUT"): h.put_settings,
            ("fields", "GET"): h.list_fields,
            ("fields", "POST"): h.create_field,
            ("field", "PUT"): h.update_field,
            ("field", "DELETE"): h.delete_field,
        }
        self.shapes = {shape for shape, _ in self.table}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        found = route_key(scope["path"])
        if found is None or found[0] not in self.shapes:
            return await _answer(
                send, 404, error_body(utc_now(), "NOTFOUND", "NOTFOUND", "Resource not found.")
            )
        handler = self.table.get((found[0], method))
        if handler is None:
            return await _answer(
                send,
                405,
                error_body(utc_now(), "BADREQUEST", "INVALID_REQUEST", "Method not allowed."),
            )
        body = await _read_body(receive)
        target = request_target(scope.get("raw_path"), scope["path"], scope["query_string"])
        try:
            merchant_id = self.sim.authenticator.authenticate(
                method, target, scope["headers"], body
            )
        except SignatureInvalid as exc:
            log.warning(
                "authentication failed",
                reason=exc.reason,
                method=method,
                path=scope["path"],
                merchant_header=_header(scope, b"v-c-merchant-id"),
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        *JSON_HEADERS,
                        (b"content-length", str(len(AUTH_FAILED_BODY)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": AUTH_FAILED_BODY})
            return None
        scope["sim.merchant"] = merchant_id
        received: dict[str, Any] = {
            "method": method,
            "path": scope["path"],
            "merchantId": merchant_id,
            "body": body.decode("utf-8", errors="replace"),
        }
        self.sim.received.append(received)
        try:  # message-level encryption: the signature covered the wrapped body, now read it
            body, received["encrypted"] = self.sim.encryption.request_body(found[0], method, body)
            recipient = self.sim.encryption.response_recipient(
                found[0], method, merchant_id, scope["headers"]
            )
        except MleRefused as exc:
            log.warning("mle refused", reason=str(exc), method=method, path=scope["path"])
            refusal = error_body(utc_now(), "BADREQUEST", "INVALID_REQUEST", str(exc))
            return await _answer(send, 400, refusal)
        received["responseEncrypted"] = recipient is not None
        call = Call(scope, found[1], merchant_id, self.sim.state.book(merchant_id), body, utc_now())
        try:
            status, payload = handler(call)
        except Exception as exc:  # every refusal, and any bug, becomes a Cybersource-shaped answer
            status, payload = _refusal(call.now, exc)
        if recipient is not None and payload is not None and 200 <= status < 300:
            payload = seal(payload, recipient, dumps)
        await _answer(send, status, payload)
        return None


def _refusal(now: datetime, exc: Exception) -> Reply:
    if isinstance(exc, ValidationFailed):
        return 400, error_body(
            now, "BADREQUEST", "VALIDATION_ERROR", "Field validation errors.", exc.details
        )
    if isinstance(exc, InvoiceProblem):
        return exc.http_status, error_body(now, exc.status, exc.reason, exc.message, exc.details)
    if isinstance(exc, md.InvalidImage):
        return 400, error_body(
            now,
            "BADREQUEST",
            "INVALID_IMAGE",
            str(exc),
            [{"field": "invoiceSettingsInformation.merchantLogo", "reason": INVALID}],
        )
    if isinstance(exc, md.FieldDefinitionProblem):
        return exc.http_status, exc.body(now)
    log.exception("simulator bug", exc_info=exc)
    return 500, error_body(now, "SERVER_ERROR", "SYSTEM_ERROR", "Error - General system failure.")


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, payload: Any) -> None:
    body = b"" if payload is None else dumps(payload)
    headers = [(b"content-length", str(len(body)).encode())]
    if payload is not None:
        headers.append(JSON_HEADERS[0])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


class Handlers:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.link_base = sim.config.payment_link_base

    def _respond(
        self, call: Call, outcome: Outcome, *, self_link: dict[str, str] | None = None
    ) -> Reply:
        invoice = outcome.invoice
        for event in outcome.events:
            self.sim.emit_webhook(event, invoice)
        if outcome.email_failed:
            return 202, error_body(
                call.now,
                "ACCEPTED",
                "ACCEPTED",
                f"Invoice ID {invoice.id} created but failed to send an email. Send the invoice "
                "separately.",
            )
        body = render_invoice(
            invoice,
            call.now,
            self.link_base,
            self_link=self_link,
            definitions=md.definitions_by_id(call.book),
        )
        return outcome.http_status, body

    # --- invoices ---

    def create_invoice(self, call: Call) -> Reply:
        data = validate_invoice(call.json(), for_update=False)
        email_fails = bool(call.scope.get("sim.email_fails"))
        return self._respond(call, call.book.create(data, call.now, email_fails=email_fails))

    def list_invoices(self, call: Call) -> Reply:
        query = call.query
        details: list[dict[str, str]] = []
        numbers: dict[str, int] = {}
        for name, low, high in (("offset", 0, None), ("limit", 1, MAX_LIST_LIMIT)):
            raw = query.get(name)
            if raw is None or raw == "":
                details.append({"field": name, "reason": MISSING})
            elif not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
                details.append({"field": name, "reason": INVALID})
            else:
                numbers[name] = int(raw)
        status = query.get("status")
        # The spec's own example filters with `status=draft`: compare case-insensitively.
        if status is not None and (status.upper() not in LIST_FILTERS or status.upper() == PENDING):
            details.append({"field": "status", "reason": INVALID})
        if details:
            raise ValidationFailed(details)
        offset, limit = numbers["offset"], numbers["limit"]
        total, page = call.book.page(offset, limit, status.upper() if status else None)
        if not page:
            return 404, error_body(call.now, "NOTFOUND", "NOTFOUND", "Invoice does not exist.")
        return 200, render_list(page, total, offset, limit, status, call.now)

    def get_invoice(self, call: Call) -> Reply:
        invoice = call.book.get(call.params["id"])
        return 200, render_invoice(
            invoice,
            call.now,
            self.link_base,
            with_history=True,
            definitions=md.definitions_by_id(call.book),
        )

    def update_invoice(self, call: Call) -> Reply:
        call.book.get(call.params["id"])  # 404 before 400, as for any missing resource
        data = validate_invoice(call.json(), for_update=True)
        return self._respond(call, call.book.update(call.params["id"], data, call.now))

    def send(self, call: Call) -> Reply:
        call.json()  # the SDK sends {}; a body that is not JSON is refused like any other
        return self._respond(call, call.book.send(call.params["id"], call.now))

    def cancel(self, call: Call) -> Reply:
        call.json()
        return self._respond(call, call.book.cancel(call.params["id"], call.now))

    def publish(self, call: Call) -> Reply:
        call.json()
        invoice_id = call.params["id"]
        outcome = call.book.publish(invoice_id, call.now)
        # The spec's publish example links `self` to the publication action itself.
        return self._respond(
            call,
            outcome,
            self_link={"href": f"/v2/invoices/{invoice_id}/publication", "method": "POST"},
        )

    # --- invoice settings ---

    def _product_type(self, call: Call) -> str:
        value = (
            call.query.get("productType", "INVOICING")
            if call.scope["query_string"]
            else "INVOICING"
        )
        if value not in md.PRODUCT_TYPES:
            raise ValidationFailed([{"field": "productType", "reason": INVALID}])
        return value

    def get_settings(self, call: Call) -> Reply:
        settings = md.read_settings(
            call.book, self._product_type(call), self.sim.display_name(call.merchant_id)
        )
        return 200, {"submitTimeUtc": submit_time(call.now), **settings}

    def put_settings(self, call: Call) -> Reply:
        kind = self._product_type(call)
        update = md.validate_settings(call.json())
        settings = md.write_settings(
            call.book, kind, self.sim.display_name(call.merchant_id), update
        )
        return 200, {"submitTimeUtc": submit_time(call.now), **settings}

    # --- merchant-defined fields ---

    @staticmethod
    def _definition_id(call: Call) -> int:
        raw = call.params["id"]
        if not raw.isdigit():
            raise md.FieldDefinitionProblem(400, "VALIDATION_ERROR", "id must be an integer.")
        return int(raw)

    def list_fields(self, call: Call) -> Reply:
        return 200, md.list_definitions(call.book, call.params["referenceType"])

    def create_field(self, call: Call) -> Reply:
        data = md.validate_definition(call.json())
        return 201, md.create_definition(call.book, call.params["referenceType"], data)

    def update_field(self, call: Call) -> Reply:
        data = md.validate_definition(call.json())
        return 200, md.update_definition(
            call.book, call.params["referenceType"], self._definition_id(call), data
        )

    def delete_field(self, call: Call) -> Reply:
        md.delete_definition(call.book, call.params["referenceType"], self._definition_id(call))
        return 204, None
