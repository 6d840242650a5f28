"""What an upstream invoice body says about the invoice, read leniently (numbers or strings,
nulls)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from app.events.types import EventType
from app.invoices.commands import InvoiceStatus, OperationKind

# The lifecycle event a move into a status stands for.
STATUS_EVENTS = {
    "CREATED": EventType.PUBLISHED,
    "SENT": EventType.SENT,
    "PARTIAL": EventType.PARTIALLY_PAID,
    "PAID": EventType.PAID,
    "CANCELED": EventType.CANCELED,
    "PENDING": EventType.PAYMENT_PENDING,
}
KNOWN_STATUSES = frozenset(status.value for status in InvoiceStatus)
# Names an answer's `_supportedActions` (or its HAL `_links`) may give an action, and the command it
# is.
ACTION_NAMES = {
    "update": OperationKind.UPDATE,
    "publish": OperationKind.PUBLISH,
    "publication": OperationKind.PUBLISH,
    "send": OperationKind.SEND,
    "resend": OperationKind.SEND,
    "deliver": OperationKind.SEND,
    "delivery": OperationKind.SEND,
    "cancel": OperationKind.CANCEL,
    "cancelation": OperationKind.CANCEL,
    "cancellation": OperationKind.CANCEL,
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
        status = status.upper() if isinstance(status, str) else None
        return cls(
            # Not a status of an invoice (the ACCEPTED of a 202): read the invoice for the real one.
            status=status if status in KNOWN_STATUSES else None,
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

    @property
    def latest_history_event(self) -> str | None:
        """The newest `invoiceHistory` entry's event (by its date; the first listed on a tie)."""
        entries = [
            entry
            for entry in self.body.get("invoiceHistory") or []
            if isinstance(entry, dict) and isinstance(entry.get("event"), str)
        ]
        if not entries:
            return None
        newest = max(entries, key=lambda entry: str(entry.get("date") or ""))
        return str(newest["event"]).upper()

    @property
    def email_sent(self) -> bool:
        return self.status not in ("DRAFT", "CREATED") or self.send_count > 0

    def matches_request(self, request: dict[str, Any]) -> bool:
        """Is this upstream invoice the one our create asked for?

        Asked after a DUPLICATE_RECORD or a lost answer: the number is ours, but an invoice made
        elsewhere with the same number (another environment on the same merchant) must not be taken
        for ours. So every identifying field the request set must come back the same: amounts,
        currency, customer, due date, description and the number of line items. A mismatch fails the
        create, visibly.
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


def status_event(
    old: str | None, new: str | None, *, latest_history: str | None = None
) -> EventType | None:
    """The event a move from `old` to `new` stands for (None: nothing happened worth one).

    Leaving PENDING is the decision on a payment under review: back where it was (CREATED, SENT, or
    PARTIAL with a REJECTED entry as the newest history) is `invoice.payment_rejected`, never a
    second `invoice.sent` or `invoice.partially_paid`; PARTIAL or PAID after a PAYMENT is that
    payment.
    """
    if new is None or new == old:
        return None
    rejected = new in ("CREATED", "SENT") or (new == "PARTIAL" and latest_history == "REJECTED")
    if old == "PENDING" and rejected:
        return EventType.PAYMENT_REJECTED
    return STATUS_EVENTS.get(new)


def supported_actions(body: Any) -> frozenset[str] | None:
    """The commands an upstream answer says the invoice allows now, from its `_supportedActions`.

    None when the answer carries no such list (then the status table of `commands.py` decides).
    Entries are action names (`send`, `deliver`, `cancel`, ...) or objects with a `name`/`action`;
    unknown names are ignored.
    """
    listed = body.get("_supportedActions") if isinstance(body, dict) else None
    if not isinstance(listed, list):
        return None
    kinds: set[str] = set()
    for entry in listed:
        name = entry.get("name") or entry.get("action") if isinstance(entry, dict) else entry
        if isinstance(name, str) and name.strip().lower() in ACTION_NAMES:
            kinds.add(ACTION_NAMES[name.strip().lower()].value)
    return frozenset(kinds)
