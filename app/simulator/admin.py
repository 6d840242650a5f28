"""Unsigned test-only routes under /__sim/: payer actions, faults, webhook log, inspection, reset.

Their bodies are the simulator's own (not Cybersource shapes):
`{"error": <code>, "message": <text>}` on refusal, so tests and people can read them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.simulator.outside import OutsideRefused, create_outside
from app.simulator.state import MerchantBook, Outcome, PaymentRefused, utc_now
from app.simulator.validation import parse_amount
from app.simulator.views import JSONBody, admin_invoice

if TYPE_CHECKING:
    from app.simulator.app import Simulator


def _refuse(status: int, code: str, message: str) -> Response:
    return JSONBody({"error": code, "message": message}, status)


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    return json.loads(raw)


def admin_routes(sim: Simulator) -> list[Route]:
    def merchant_of(request: Request, body: dict[str, Any] | None = None) -> str | None:
        merchant = (body or {}).get("merchantId") or request.query_params.get("merchantId")
        merchant = str(merchant) if merchant else sim.config.default_merchant_id
        return merchant if merchant in sim.state.books else None

    async def health(request: Request) -> Response:
        return JSONBody({"status": "ok"})

    async def config(request: Request) -> Response:
        # What the simulator pretends to be, without any secret.
        webhook = sim.config.webhook
        return JSONBody(
            {
                "merchants": [
                    {
                        "merchantId": m.merchant_id,
                        "keyId": m.key_id,
                        "portfolioId": m.portfolio_id,
                        "jwtCertificate": m.certificate_pem is not None,
                    }
                    for m in sim.config.merchants
                ],
                "hostName": sim.config.host_name,
                "clockToleranceS": sim.config.clock_tolerance_s,
                "webhook": None
                if webhook is None
                else {
                    "url": webhook.url,
                    "keyId": webhook.key_id,
                    "webhookId": webhook.webhook_id,
                    "retryDelays": list(webhook.retry_delays),
                    "bodyShape": webhook.body_shape,
                    "sign": webhook.sign,
                },
            }
        )

    async def reset(request: Request) -> Response:
        sim.reset()
        return JSONBody({"status": "reset"})

    async def list_invoices(request: Request) -> Response:
        merchant = merchant_of(request)
        if merchant is None:
            return _refuse(404, "UNKNOWN_MERCHANT", "merchantId is not configured")
        book = sim.state.book(merchant)
        return JSONBody(
            [admin_invoice(inv, sim.config.payment_link_base) for inv in book.invoices.values()]
        )

    async def add_outside(request: Request) -> Response:
        """Invoices made outside any API client (Business Center, another tool): see outside.py."""
        try:
            body = await _json(request)
        except ValueError:
            return _refuse(400, "BAD_JSON", "body must be JSON")
        merchant = merchant_of(request, body if isinstance(body, dict) else None)
        if merchant is None:
            return _refuse(404, "UNKNOWN_MERCHANT", "merchantId is not configured")
        try:
            made = create_outside(sim.state.book(merchant), body, utc_now())
        except OutsideRefused as exc:
            return _refuse(exc.http_status, exc.code, exc.message)
        return JSONBody([admin_invoice(inv, sim.config.payment_link_base) for inv in made], 201)

    async def get_invoice(request: Request) -> Response:
        merchant = merchant_of(request)
        if merchant is None:
            return _refuse(404, "UNKNOWN_MERCHANT", "merchantId is not configured")
        invoice = sim.state.book(merchant).invoices.get(request.path_params["id"])
        if invoice is None:
            return _refuse(404, "NOT_FOUND", "invoice does not exist for this merchant")
        return JSONBody(admin_invoice(invoice, sim.config.payment_link_base))

    async def _payer_request(
        request: Request, example: str
    ) -> tuple[dict[str, Any], str] | Response:
        """The JSON object body of a payer action and the merchant it is for, or the refusal."""
        try:
            body = await _json(request)
        except ValueError:
            return _refuse(400, "BAD_JSON", f"body must be JSON like {example}")
        if not isinstance(body, dict):
            return _refuse(400, "BAD_JSON", "body must be a JSON object")
        merchant = merchant_of(request, body)
        if merchant is None:
            return _refuse(404, "UNKNOWN_MERCHANT", "merchantId is not configured")
        return body, merchant

    def _payment_reply(
        merchant: str, act: Callable[[MerchantBook], Outcome], not_payable: str
    ) -> Response:
        try:
            outcome = act(sim.state.book(merchant))
        except PaymentRefused as exc:
            code = {404: "NOT_FOUND", 409: not_payable}.get(exc.http_status, "PAYMENT_REFUSED")
            return _refuse(exc.http_status, code, exc.message)
        deliveries = [sim.emit_webhook(event, outcome.invoice) for event in outcome.events]
        result = admin_invoice(outcome.invoice, sim.config.payment_link_base)
        result["webhooks"] = [d["deliveryId"] for d in deliveries if d is not None]
        return JSONBody(result)

    async def pay(request: Request) -> Response:
        parsed = await _payer_request(request, '{"amount": "10.00"}')
        if isinstance(parsed, Response):
            return parsed
        body, merchant = parsed
        amount = parse_amount(body.get("amount"))
        if amount is None:
            return _refuse(422, "INVALID_AMOUNT", 'amount must be a positive decimal, e.g. "10.00"')
        review = body.get("review", False)
        if not isinstance(review, bool):
            return _refuse(422, "INVALID_REVIEW", "review must be true or false")
        invoice_id, now = request.path_params["id"], utc_now()
        return _payment_reply(
            merchant, lambda book: book.pay(invoice_id, amount, now, review=review), "NOT_PAYABLE"
        )

    async def decide(request: Request) -> Response:
        parsed = await _payer_request(request, '{"decision": "accept"}')
        if isinstance(parsed, Response):
            return parsed
        body, merchant = parsed
        decision = body.get("decision")
        if decision not in ("accept", "reject"):
            return _refuse(422, "INVALID_DECISION", 'decision must be "accept" or "reject"')
        invoice_id, now = request.path_params["id"], utc_now()
        accept = decision == "accept"
        return _payment_reply(
            merchant, lambda book: book.decide(invoice_id, accept, now), "NOT_PENDING"
        )

    async def remind(request: Request) -> Response:
        parsed = await _payer_request(request, '{"overdue": false}')
        if isinstance(parsed, Response):
            return parsed
        body, merchant = parsed
        overdue = body.get("overdue", False)
        if not isinstance(overdue, bool):
            return _refuse(422, "INVALID_OVERDUE", "overdue must be true or false")
        invoice_id, now = request.path_params["id"], utc_now()
        return _payment_reply(
            merchant, lambda book: book.remind(invoice_id, overdue, now), "NOT_REMINDABLE"
        )

    async def received(request: Request) -> Response:
        query = request.query_params
        items = [
            r
            for r in sim.received
            if all(query.get(k) in (None, r.get(k)) for k in ("method", "path", "merchantId"))
        ]
        return JSONBody(items)

    async def list_faults(request: Request) -> Response:
        return JSONBody([rule.describe() for rule in sim.faults.rules])

    async def add_faults(request: Request) -> Response:
        try:
            rules = sim.faults.add(await _json(request))
        except (ValueError, TypeError) as exc:
            return _refuse(400, "INVALID_FAULT", str(exc))
        return JSONBody([rule.describe() for rule in rules], 201)

    async def clear_faults(request: Request) -> Response:
        sim.faults.clear()
        return Response(status_code=204)

    async def delete_fault(request: Request) -> Response:
        if not sim.faults.remove(request.path_params["id"]):
            return _refuse(404, "NOT_FOUND", "no fault rule with that id")
        return Response(status_code=204)

    async def webhooks(request: Request) -> Response:
        query = request.query_params
        items = [
            d
            for d in sim.webhooks.deliveries
            if all(
                query.get(k) in (None, d.get(k)) for k in ("invoiceNumber", "eventType", "outcome")
            )
        ]
        return JSONBody(items)

    return [
        Route("/__sim/health", health, methods=["GET"]),
        Route("/__sim/config", config, methods=["GET"]),
        Route("/__sim/reset", reset, methods=["POST"]),
        Route("/__sim/invoices", list_invoices, methods=["GET"]),
        Route("/__sim/invoices", add_outside, methods=["POST"]),
        Route("/__sim/invoices/{id}", get_invoice, methods=["GET"]),
        Route("/__sim/invoices/{id}/payments", pay, methods=["POST"]),
        Route("/__sim/invoices/{id}/payments/pending", decide, methods=["POST"]),
        Route("/__sim/invoices/{id}/reminders", remind, methods=["POST"]),
        Route("/__sim/requests", received, methods=["GET"]),
        Route("/__sim/faults", list_faults, methods=["GET"]),
        Route("/__sim/faults", add_faults, methods=["POST"]),
        Route("/__sim/faults", clear_faults, methods=["DELETE"]),
        Route("/__sim/faults/{id}", delete_fault, methods=["DELETE"]),
        Route("/__sim/webhooks", webhooks, methods=["GET"]),
    ]
