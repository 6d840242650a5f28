"""The signed Cybersource invoicing routes (same paths, status codes and bodies as the spec).

Each handler is synchronous after authentication and body parsing: state changes never straddle an
await, so concurrent requests on the one event loop cannot interleave inside a transition.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.cybersource.signing import SignatureInvalid
from app.logging import get_logger
from app.simulator import merchant_data as md
from app.simulator.auth import request_target
from app.simulator.state import LIST_FILTERS, PENDING, InvoiceProblem, MerchantBook, Outcome, utc_now
from app.simulator.validation import INVALID, MISSING, ValidationFailed, validate_invoice
from app.simulator.views import (
    AUTH_FAILED_BODY,
    JSON_TYPE,
    JSONBody,
    error_body,
    render_invoice,
    render_list,
    submit_time,
)

if TYPE_CHECKING:
    from app.simulator.app import Simulator

log = get_logger("app.simulator")
MAX_LIST_LIMIT = 1000


@dataclass(slots=True)
class Call:
    """One authenticated request: whose book it touches, its parsed parts, and one clock reading."""

    request: Request
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
    def path_id(self) -> str:
        value: str = self.request.path_params["id"]
        return value


Handler = Callable[[Call], Response]


def signed(sim: Simulator, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler with Cybersource authentication and the invoice error bodies."""

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        scope = request.scope
        target = request_target(scope.get("raw_path"), scope["path"], scope["query_string"])
        try:
            merchant_id = sim.authenticator.authenticate(scope["method"], target, scope["headers"], body)
        except SignatureInvalid as exc:
            log.warning(
                "authentication failed",
                reason=exc.reason,
                method=scope["method"],
                path=scope["path"],
                merchant_header=request.headers.get("v-c-merchant-id"),
            )
            return Response(AUTH_FAILED_BODY, 401, media_type=JSON_TYPE)
        scope["sim.merchant"] = merchant_id
        call = Call(request, merchant_id, sim.state.book(merchant_id), body, utc_now())
        try:
            return handler(call)
        except ValidationFailed as exc:
            return JSONBody(
                error_body(call.now, "BADREQUEST", "VALIDATION_ERROR", "Field validation errors.", exc.details),
                400,
            )
        except InvoiceProblem as exc:
            return JSONBody(error_body(call.now, exc.status, exc.reason, exc.message, exc.details), exc.http_status)
        except md.InvalidImage as exc:
            return JSONBody(
                error_body(
                    call.now,
                    "BADREQUEST",
                    "INVALID_IMAGE",
                    str(exc),
                    [{"field": "invoiceSettingsInformation.merchantLogo", "reason": INVALID}],
                ),
                400,
            )
        except md.FieldDefinitionProblem as exc:
            return JSONBody(exc.body(call.now), exc.http_status)

    return endpoint


def invoicing_routes(sim: Simulator) -> list[Route]:
    def respond(call: Call, outcome: Outcome, *, self_link: dict[str, str] | None = None) -> Response:
        invoice = outcome.invoice
        for event in outcome.events:
            sim.emit_webhook(event, invoice)
        if outcome.email_failed:
            return JSONBody(
                error_body(
                    call.now,
                    "ACCEPTED",
                    "ACCEPTED",
                    f"Invoice ID {invoice.id} created but failed to send an email. Send the invoice separately.",
                ),
                202,
            )
        body = render_invoice(
            invoice,
            call.now,
            sim.config.payment_link_base,
            self_link=self_link,
            definitions=md.definitions_by_id(call.book),
        )
        return JSONBody(body, outcome.http_status)

    def create_invoice(call: Call) -> Response:
        data = validate_invoice(call.json(), for_update=False)
        return respond(call, call.book.create(data, call.now))

    def list_invoices(call: Call) -> Response:
        query = call.request.query_params
        c_details: list[dict[str, str]] = []
        numbers: dict[str, int] = {}
        for name, low, high in (("offset", 0, None), ("limit", 1, MAX_LIST_LIMIT)):
            raw = query.get(name)
            if raw is None or raw == "":
                c_details.append({"field": name, "reason": MISSING})
            elif not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
                c_details.append({"field": name, "reason": INVALID})
            else:
                numbers[name] = int(raw)
        status = query.get("status")
        if status is not None:
            status = status.upper()
            if status not in LIST_FILTERS or status == PENDING:
                c_details.append({"field": "status", "reason": INVALID})
        if c_details:
            raise ValidationFailed(c_details)
        offset, limit = numbers["offset"], numbers["limit"]
        total, page = call.book.page(offset, limit, status)
        if not page:
            return JSONBody(error_body(call.now, "NOTFOUND", "NOTFOUND", "Invoice does not exist."), 404)
        return JSONBody(render_list(page, total, offset, limit, query.get("status"), call.now))

    def get_invoice(call: Call) -> Response:
        invoice = call.book.get(call.path_id)
        return JSONBody(
            render_invoice(
                invoice,
                call.now,
                sim.config.payment_link_base,
                with_history=True,
                definitions=md.definitions_by_id(call.book),
            )
        )

    def update_invoice(call: Call) -> Response:
        call.book.get(call.path_id)  # 404 before 400, as for a missing resource
        data = validate_invoice(call.json(), for_update=True)
        return respond(call, call.book.update(call.path_id, data, call.now))

    def action(name: str) -> Handler:
        def run(call: Call) -> Response:
            call.json()  # the SDK sends {}; anything that is not JSON is refused like any other body
            book, invoice_id = call.book, call.path_id
            if name == "delivery":
                return respond(call, book.send(invoice_id, call.now))
            if name == "cancelation":
                return respond(call, book.cancel(invoice_id, call.now))
            outcome = book.publish(invoice_id, call.now)
            # The spec's publish example links `self` to the publication action itself.
            return respond(
                call, outcome, self_link={"href": f"/v2/invoices/{invoice_id}/publication", "method": "POST"}
            )

        return run

    def product_type(call: Call) -> str:
        value = call.request.query_params.get("productType", "INVOICING")
        if value not in md.PRODUCT_TYPES:
            raise ValidationFailed([{"field": "productType", "reason": INVALID}])
        return value

    def get_settings(call: Call) -> Response:
        settings = md.read_settings(call.book, product_type(call), sim.display_name(call.merchant_id))
        return JSONBody({"submitTimeUtc": submit_time(call.now), **settings})

    def put_settings(call: Call) -> Response:
        kind = product_type(call)
        update = md.validate_settings(call.json())
        settings = md.write_settings(call.book, kind, sim.display_name(call.merchant_id), update)
        return JSONBody({"submitTimeUtc": submit_time(call.now), **settings})

    def reference_type(call: Call) -> str:
        value: str = call.request.path_params["referenceType"]
        return value

    def definition_id(call: Call) -> int:
        raw: str = call.request.path_params["id"]
        if not raw.isdigit():
            raise md.FieldDefinitionProblem(400, "VALIDATION_ERROR", "id must be an integer.")
        return int(raw)

    def list_fields(call: Call) -> Response:
        return JSONBody(md.list_definitions(call.book, reference_type(call)))

    def create_field(call: Call) -> Response:
        data = md.validate_definition(call.json())
        return JSONBody(md.create_definition(call.book, reference_type(call), data), 201)

    def update_field(call: Call) -> Response:
        data = md.validate_definition(call.json())
        return JSONBody(md.update_definition(call.book, reference_type(call), definition_id(call), data))

    def delete_field(call: Call) -> Response:
        md.delete_definition(call.book, reference_type(call), definition_id(call))
        return Response(status_code=204)

    def route(path: str, handler: Handler, method: str) -> Route:
        return Route(path, signed(sim, handler), methods=[method], include_in_schema=False)

    base = "/invoicing/v2"
    return [
        route(f"{base}/invoices", create_invoice, "POST"),
        route(f"{base}/invoices", list_invoices, "GET"),
        route(f"{base}/invoices/{{id}}", get_invoice, "GET"),
        route(f"{base}/invoices/{{id}}", update_invoice, "PUT"),
        route(f"{base}/invoices/{{id}}/delivery", action("delivery"), "POST"),
        route(f"{base}/invoices/{{id}}/cancelation", action("cancelation"), "POST"),
        route(f"{base}/invoices/{{id}}/publication", action("publication"), "POST"),
        route(f"{base}/invoiceSettings", get_settings, "GET"),
        route(f"{base}/invoiceSettings", put_settings, "PUT"),
        route(f"{base}/{{referenceType}}/merchantDefinedFields", list_fields, "GET"),
        route(f"{base}/{{referenceType}}/merchantDefinedFields", create_field, "POST"),
        route(f"{base}/{{referenceType}}/merchantDefinedFields/{{id}}", update_field, "PUT"),
        route(f"{base}/{{referenceType}}/merchantDefinedFields/{{id}}", delete_field, "DELETE"),
    ]
