"""Response bodies in Cybersource's shapes: HAL `_links`, invoice documents, lists, error bodies.

Amounts are rendered as strings, as the spec's response schemas declare them. (The developer guide
shows real responses with JSON numbers; a facade must accept both, and the simulator picks the
spec's form so responses validate against the schema.)
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from app.simulator.state import CREATED, DRAFT, PARTIAL, PAYABLE_LINK_STATUSES, SENT, Invoice

JSON_TYPE = "application/json;charset=utf-8"
AUTH_FAILED_BODY = b'{"response":{"rmsg":"Authentication Failed"}}'


def _json_default(value: object) -> object:
    # Unknown fields keep JSON numbers that were parsed as Decimal; give them back as numbers (as
    # text when no float holds them: `Infinity` is not JSON, and a client would choke on it).
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else format(value, "f")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(body: Any) -> bytes:
    return json.dumps(
        body, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode("utf-8")


class JSONBody(Response):
    """A Starlette response that serialises with the simulator's compact, Decimal-aware encoder."""

    media_type = JSON_TYPE

    def render(self, content: Any) -> bytes:
        return dumps(content)


def submit_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def error_body(
    moment: datetime,
    status: str,
    reason: str,
    message: str,
    details: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "submitTimeUtc": submit_time(moment),
        "status": status,
        "reason": reason,
        "message": message,
    }
    if details:
        body["details"] = details
    return body


def _link(href: str, method: str) -> dict[str, str]:
    return {"href": href, "method": method}


def invoice_links(invoice: Invoice, self_link: dict[str, str] | None = None) -> dict[str, Any]:
    """The actions the invoice's status still allows (the cancel example of the guide has only
    `self`)."""
    base = f"/v2/invoices/{invoice.id}"
    links: dict[str, Any] = {"self": self_link or _link(base, "GET")}
    if invoice.status in {DRAFT, CREATED, SENT}:
        links["update"] = _link(base, "PUT")
        links["deliver"] = _link(f"{base}/delivery", "POST")
        links["cancel"] = _link(f"{base}/cancelation", "POST")
    elif invoice.status == PARTIAL:
        links["deliver"] = _link(f"{base}/delivery", "POST")
    return links


def payment_link(invoice: Invoice, link_base: str) -> str:
    return f"{link_base}/ebc2/invoicing/payInvoice/{invoice.payment_token}?version=v2.1"


def render_invoice(
    invoice: Invoice,
    moment: datetime,
    link_base: str,
    *,
    with_history: bool = False,
    self_link: dict[str, str] | None = None,
    definitions: dict[int, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    content = invoice.content
    body: dict[str, Any] = {
        "_links": invoice_links(invoice, self_link),
        "id": invoice.id,
        "submitTimeUtc": submit_time(moment),
        "status": invoice.status,
    }
    for key, value in content.items():
        if key not in {"invoiceInformation", "orderInformation"}:
            body[key] = value
    info = dict(invoice.info)
    if invoice.status in PAYABLE_LINK_STATUSES:
        info["paymentLink"] = payment_link(invoice, link_base)
    body["invoiceInformation"] = info
    order = dict(content["orderInformation"])
    amounts = dict(order["amountDetails"])
    amounts["balanceAmount"] = format(invoice.balance, "f")
    order["amountDetails"] = amounts
    body["orderInformation"] = order
    values = content.get("merchantDefinedFieldValues")
    if values and definitions:
        joined = [
            {
                **definitions[v["definitionId"]],
                "value": v.get("value"),
                "definitionId": v["definitionId"],
            }
            for v in values
            if v.get("definitionId") in definitions
        ]
        if joined:
            body["merchantDefinedFieldValuesWithDefinition"] = joined
    if with_history:
        body["invoiceHistory"] = list(reversed(invoice.history))
    return body


def render_list_item(invoice: Invoice) -> dict[str, Any]:
    customer = invoice.content.get("customerInformation") or {}
    info = invoice.info
    item: dict[str, Any] = {
        "_links": invoice_links(invoice),
        "id": invoice.id,
        "status": invoice.status,
        "createdDate": submit_time(invoice.created_at),
    }
    summary = {k: customer[k] for k in ("name", "merchantCustomerId") if k in customer}
    if summary:
        item["customerInformation"] = summary
    item["invoiceInformation"] = {k: info[k] for k in ("dueDate", "expirationDate") if k in info}
    amounts = invoice.amount_details
    item["orderInformation"] = {
        "amountDetails": {"totalAmount": amounts["totalAmount"], "currency": amounts["currency"]}
    }
    return item


def render_list(
    invoices: list[Invoice],
    total: int,
    offset: int,
    limit: int,
    status: str | None,
    moment: datetime,
) -> dict[str, Any]:
    def href(at: int) -> str:
        query: dict[str, Any] = {"offset": at, "limit": limit}
        if status is not None:
            query["status"] = status
        return f"/v2/invoices/?{urlencode(query)}"

    links: dict[str, Any] = {"self": _link(href(offset), "GET")}
    if offset + limit < total:
        links["next"] = _link(href(offset + limit), "GET")
    if offset > 0:
        links["previous"] = _link(href(max(0, offset - limit)), "GET")
    return {
        "_links": links,
        "submitTimeUtc": submit_time(moment),
        "totalInvoices": total,
        "invoices": [render_list_item(inv) for inv in invoices],
    }


def admin_invoice(invoice: Invoice, link_base: str) -> dict[str, Any]:
    """Everything the simulator knows about an invoice (admin route; not a Cybersource shape)."""
    return {
        "id": invoice.id,
        "merchantId": invoice.merchant_id,
        "status": invoice.status,
        "createdDate": submit_time(invoice.created_at),
        "content": invoice.content,
        "balanceAmount": format(invoice.balance, "f"),
        "paidAmount": format(invoice.paid, "f"),
        "paymentLink": payment_link(invoice, link_base)
        if invoice.status in PAYABLE_LINK_STATUSES
        else None,
        "invoiceHistory": list(reversed(invoice.history)),
        "emails": list(invoice.emails),
        "sendCount": sum(1 for e in invoice.emails if e["kind"] == "SEND"),
        "resendCount": sum(1 for e in invoice.emails if e["kind"] == "RESEND"),
    }
