"""Invoices made "outside" (Business Center, another tool, before the facade was installed): the
admin route `POST /__sim/invoices` puts them straight into a merchant's book, in any status, without
a signed call and without webhooks, so the facade's adopt and import paths have something it never
saw.

Body (JSON object):

    {"invoice": <a createInvoice body>,     # required; its invoiceNumber is optional
     "status": "SENT",                       # DRAFT (default), CREATED, SENT, PARTIAL, PAID,
                                             # CANCELED
     "paidAmount": "10.00",                  # PARTIAL: what was paid (default: half the total)
     "createdDate": "2026-01-31T10:00:00Z",  # default: now
     "count": 250,                           # that many copies, numbered <invoiceNumber>-0001, ...
     "merchantId": "m"}                      # default: the first merchant
"""

from __future__ import annotations

import copy
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.simulator.state import (
    CANCELED,
    CREATED,
    DRAFT,
    PAID,
    PARTIAL,
    SENT,
    Invoice,
    MerchantBook,
    format_money,
)
from app.simulator.validation import ValidationFailed, parse_amount, validate_invoice

OUTSIDE_STATUSES = (DRAFT, CREATED, SENT, PARTIAL, PAID, CANCELED)
MAX_COUNT = 10_000


class OutsideRefused(Exception):
    """The admin body cannot be honoured: 400/409/422 with a code and a message."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


def _created_date(raw: Any) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise OutsideRefused(422, "INVALID_CREATED_DATE", "createdDate must be ISO 8601 text")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise OutsideRefused(422, "INVALID_CREATED_DATE", "createdDate must be ISO 8601") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _count(raw: Any) -> int:
    if raw is None:
        return 1
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_COUNT:
        raise OutsideRefused(422, "INVALID_COUNT", f"count must be an integer 1..{MAX_COUNT}")
    return raw


def _bring_to(book: MerchantBook, invoice: Invoice, status: str, paid: Decimal | None) -> None:
    """Walk a new DRAFT along the lifecycle, as the merchant and payers would have."""
    now = invoice.created_at
    if status == DRAFT:
        return
    if status == CANCELED:
        book.cancel(invoice.id, now)
        return
    book.publish(invoice.id, now)
    if status in (SENT, PARTIAL, PAID) and invoice.email is not None:
        invoice.status = SENT
        invoice.send_email("SEND", now)
    elif status == SENT:
        raise OutsideRefused(422, "NO_EMAIL", "a SENT invoice needs customerInformation.email")
    if status == PAID:
        _pay(invoice, invoice.balance, now)
    elif status == PARTIAL:
        amount = paid if paid is not None else (invoice.total / 2).quantize(Decimal("0.01"))
        if not Decimal(0) < amount < invoice.balance:
            raise OutsideRefused(422, "INVALID_AMOUNT", "paidAmount must be below the total")
        _pay(invoice, amount, now)


def _pay(invoice: Invoice, amount: Decimal, now: datetime) -> None:
    invoice.paid += amount
    transaction = {
        "transactionId": "".join(secrets.choice("0123456789") for _ in range(22)),
        "amount": format_money(amount, str(amount), invoice.amount_details["totalAmount"]),
    }
    invoice.record("PAYMENT", now, transaction)
    invoice.status = PAID if invoice.balance == 0 else PARTIAL


def create_outside(book: MerchantBook, body: Any, now: datetime) -> list[Invoice]:
    """The invoices of one admin request, newest last (they list newest first, like any other)."""
    if not isinstance(body, dict) or not isinstance(body.get("invoice"), dict):
        raise OutsideRefused(400, "BAD_JSON", 'body must be {"invoice": {...}, ...}')
    status = str(body.get("status") or DRAFT).upper()
    if status not in OUTSIDE_STATUSES:
        raise OutsideRefused(422, "INVALID_STATUS", f"status must be one of {OUTSIDE_STATUSES}")
    paid = None
    if body.get("paidAmount") is not None:
        paid = parse_amount(body.get("paidAmount"))
        if paid is None:
            raise OutsideRefused(422, "INVALID_AMOUNT", "paidAmount must be a decimal")
    created = _created_date(body.get("createdDate")) or now
    count = _count(body.get("count"))
    template = dict(body["invoice"])
    info = dict(template.get("invoiceInformation") or {})
    info["sendImmediately"] = False  # the status is reached below, step by step
    template["invoiceInformation"] = info
    base = info.get("invoiceNumber")
    numbers = [base] if count == 1 else [f"{base}-{i:04d}" if base else None for i in range(count)]
    if any(n is not None and n in book.invoices for n in numbers):
        raise OutsideRefused(409, "DUPLICATE_RECORD", "an invoice with that number exists")
    inputs = []
    for number in numbers:  # every refusal before anything is stored
        one = copy.deepcopy(template)
        if number is not None:
            one["invoiceInformation"]["invoiceNumber"] = number
        try:
            inputs.append(validate_invoice(one, for_update=False))
        except ValidationFailed as exc:
            raise OutsideRefused(
                422, "VALIDATION_ERROR", f"invalid invoice: {exc.details}"
            ) from exc
    content = inputs[0].content
    if status == SENT and not (content.get("customerInformation") or {}).get("email"):
        raise OutsideRefused(422, "NO_EMAIL", "a SENT invoice needs customerInformation.email")
    total = Decimal(str(content["orderInformation"]["amountDetails"]["totalAmount"]))
    if status == PARTIAL and paid is not None and not paid < total:
        raise OutsideRefused(422, "INVALID_AMOUNT", "paidAmount must be below the total")
    made: list[Invoice] = []
    for data in inputs:
        invoice = book.create(data, created).invoice
        _bring_to(book, invoice, status, paid)
        made.append(invoice)
    return made
