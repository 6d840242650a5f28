"""What an upstream invoice body says about the invoice, read leniently (numbers or strings, nulls)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from app.events.types import EventType

# The lifecycle event a move into a status stands for.
STATUS_EVENTS = {
    "CREATED": EventType.PUBLISHED,
    "SENT": EventType.SENT,
    "PARTIAL": EventType.PARTIALLY_PAID,
    "PAID": EventType.PAID,
    "CANCELED": EventType.CANCELED,
}

SEND_HISTORY_EVENTS = frozenset({"SEND", "RESEND"})


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@dataclass(frozen=True, slots=True)
class UpstreamState:
    status: str | None
    payment_link: str | None
    balance_amount: Decimal | None
    total_amount: Decimal | None
    currency: str | None
    customer_email: str | None
    send_count: int
    body: dict[str, Any]

    @classmethod
    def from_body(cls, body: Any) -> UpstreamState:
        body = body if isinstance(body, dict) else {}
        info = body.get("invoiceInformation") or {}
        amounts = (body.get("orderInformation") or {}).get("amountDetails") or {}
        history = body.get("invoiceHistory") or []
        status = body.get("status")
        return cls(
            status=status.upper() if isinstance(status, str) else None,
            payment_link=info.get("paymentLink"),
            balance_amount=_decimal(amounts.get("balanceAmount")),
            total_amount=_decimal(amounts.get("totalAmount")),
            currency=amounts.get("currency"),
            customer_email=(body.get("customerInformation") or {}).get("email"),
            send_count=sum(
                1
                for entry in history
                if isinstance(entry, dict)
                and str(entry.get("event", "")).upper() in SEND_HISTORY_EVENTS
            ),
            body=body,
        )

    def matches_request(self, request: dict[str, Any]) -> bool:
        """Is this upstream invoice the one our create asked for?

        Asked after a DUPLICATE_RECORD or a lost answer: the number is ours, but an invoice made elsewhere
        with the same number (another environment on the same merchant) must not be taken for ours. So
        every identifying field the request set must come back the same: amounts, currency, customer,
        due date, description and the number of line items. A mismatch fails the create, visibly.
        """
        amounts = (request.get("orderInformation") or {}).get("amountDetails") or {}
        if (
            self.total_amount != _decimal(amounts.get("totalAmount"))
            or (self.currency or "").upper() != str(amounts.get("currency", "")).upper()
        ):
            return False
        upstream_items = (self.body.get("orderInformation") or {}).get("lineItems") or []
        requested_items = (request.get("orderInformation") or {}).get("lineItems")
        if requested_items is not None and len(upstream_items) != len(requested_items):
            return False
        return all(
            _same_text(_field(request, path), _field(self.body, path))
            for path in IDENTIFYING_TEXT_FIELDS
            if _field(request, path) is not None
        )


# Text fields of a create that Cybersource returns as sent (compared trimmed, case-insensitively).
IDENTIFYING_TEXT_FIELDS = (
    ("customerInformation", "email"),
    ("customerInformation", "name"),
    ("invoiceInformation", "dueDate"),
    ("invoiceInformation", "description"),
)


def _field(body: dict[str, Any], path: tuple[str, str]) -> Any:
    section = body.get(path[0])
    return section.get(path[1]) if isinstance(section, dict) else None


def _same_text(requested: Any, upstream: Any) -> bool:
    return (
        upstream is not None
        and str(requested).strip().casefold() == str(upstream).strip().casefold()
    )


def status_event(old: str | None, new: str | None) -> EventType | None:
    if new is None or new == old:
        return None
    return STATUS_EVENTS.get(new)
