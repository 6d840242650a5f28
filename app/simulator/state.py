"""In-memory invoices per merchant and the status lifecycle of README "Status lifecycle".

Every operation here is synchronous: on the single event loop a mutation therefore runs start to
finish without another request interleaving, so no lock is needed. Callers must not await between
reading an invoice and changing it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice
from typing import Any

from app.simulator.validation import InvoiceInput

DRAFT, CREATED, SENT, PARTIAL, PAID, CANCELED, PENDING = (
    "DRAFT",
    "CREATED",
    "SENT",
    "PARTIAL",
    "PAID",
    "CANCELED",
    "PENDING",
)
STATUSES = (DRAFT, CREATED, SENT, PARTIAL, PAID, CANCELED, PENDING)
# README: the list filter takes every status except PENDING.
LIST_FILTERS = frozenset(STATUSES) - {PENDING}
# paymentLink is documented for these statuses only.
PAYABLE_LINK_STATUSES = frozenset({CREATED, SENT, PARTIAL, PAID})

EVENT_SEND = "invoicing.customer.invoice.send"
EVENT_PARTIAL_RESEND = "invoicing.customer.invoice.partial-resend"
EVENT_PARTIAL_PAYMENT = "invoicing.customer.invoice.partial-payment"
EVENT_PAID = "invoicing.customer.invoice.paid"
EVENT_CANCEL = "invoicing.customer.invoice.cancel"
EVENT_REMINDER = "invoicing.customer.invoice.reminder"
EVENT_OVERDUE_REMINDER = "invoicing.customer.invoice.overdue-reminder"


class InvoiceProblem(Exception):
    """A refusal with Cybersource's error body: `status` BADREQUEST/NOTFOUND, `reason`,
    `message`."""

    http_status = 400
    status = "BADREQUEST"
    reason = "VALIDATION_ERROR"

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(InvoiceProblem):
    http_status = 404
    status = "NOTFOUND"
    reason = "NOTFOUND"

    def __init__(self) -> None:
        super().__init__("Invoice does not exist.")


class ActionNotAllowed(InvoiceProblem):
    reason = "ACTION_NOT_ALLOWED"

    def __init__(self) -> None:
        super().__init__("Requested action is not allowed.")


class DuplicateRecord(InvoiceProblem):
    reason = "DUPLICATE_RECORD"

    def __init__(self) -> None:
        super().__init__(
            "Invoice number already exists.",
            [{"field": "invoiceInformation.invoiceNumber", "reason": "INVALID_DATA"}],
        )


class MissingEmail(InvoiceProblem):
    def __init__(self) -> None:
        super().__init__(
            "Field validation errors.",
            [{"field": "customerInformation.email", "reason": "MISSING_FIELD"}],
        )


class PaymentRefused(Exception):
    """A payer action the simulator refuses (admin route): 404, 409 or 422 with a plain message."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_millis(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True, frozen=True)
class PendingPayment:
    """A payment waiting for a decision (e.g. a review): what PENDING holds until accept or
    reject."""

    amount: Decimal
    previous_status: str  # CREATED, SENT or PARTIAL: where a rejection puts the invoice back
    transaction: dict[str, str]


@dataclass(slots=True)
class Invoice:
    id: str
    merchant_id: str
    status: str
    content: dict[str, Any]
    created_at: datetime
    payment_token: str
    paid: Decimal = Decimal(0)
    history: list[dict[str, Any]] = field(
        default_factory=list
    )  # oldest first; rendered newest first
    emails: list[dict[str, Any]] = field(
        default_factory=list
    )  # every e-mail "sent", for tests to count
    pending: PendingPayment | None = None  # set exactly while the status is PENDING

    @property
    def amount_details(self) -> dict[str, Any]:
        details: dict[str, Any] = self.content["orderInformation"]["amountDetails"]
        return details

    @property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.content["invoiceInformation"]
        return info

    @property
    def total(self) -> Decimal:
        return Decimal(self.amount_details["totalAmount"])

    @property
    def balance(self) -> Decimal:
        return self.total - self.paid

    @property
    def email(self) -> str | None:
        customer = self.content.get("customerInformation") or {}
        value = customer.get("email")
        return value if isinstance(value, str) else None

    def record(
        self, event: str, moment: datetime, transaction: dict[str, str] | None = None
    ) -> None:
        entry: dict[str, Any] = {"event": event, "date": iso_millis(moment)}
        if transaction is not None:
            entry["transactionDetails"] = transaction
        self.history.append(entry)

    def send_email(self, kind: str, moment: datetime) -> None:
        self.emails.append({"kind": kind, "to": self.email, "date": iso_millis(moment)})
        self.record(kind, moment)


@dataclass(slots=True)
class Outcome:
    """What an operation did: the invoice, the HTTP status to answer, the webhook events to emit."""

    invoice: Invoice
    http_status: int = 200
    events: list[str] = field(default_factory=list)
    email_failed: bool = False


def _new_token() -> str:
    return secrets.token_urlsafe(48)


def format_money(value: Decimal, *like: str) -> str:
    """Render `value` with as many decimals as the most precise of the given amounts."""
    exponents = [Decimal(x).as_tuple().exponent for x in like]
    places = -min((e for e in exponents if isinstance(e, int)), default=0)
    quantum = Decimal(1).scaleb(-places)
    return format(value.quantize(quantum), "f")


class MerchantBook:
    """One merchant's invoices, counter, invoice settings and merchant-defined fields."""

    def __init__(self, merchant_id: str, first_number: int) -> None:
        self.merchant_id = merchant_id
        self.invoices: dict[str, Invoice] = {}
        self.next_number = first_number
        self.settings: dict[str, dict[str, Any]] = {}
        self.field_definitions: dict[str, dict[int, dict[str, Any]]] = {}
        self.next_definition_id = 1501

    def get(self, invoice_id: str) -> Invoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise NotFound()
        return invoice

    def _allocate_number(self) -> str:
        while str(self.next_number) in self.invoices:  # skip numbers callers chose themselves
            self.next_number += 1
        number = str(self.next_number)
        self.next_number += 1
        return number

    def create(self, data: InvoiceInput, now: datetime, *, email_fails: bool = False) -> Outcome:
        if data.invoice_number is not None and data.invoice_number in self.invoices:
            raise DuplicateRecord()
        number = data.invoice_number or self._allocate_number()
        content = data.content
        content["invoiceInformation"]["invoiceNumber"] = number
        invoice = Invoice(
            id=number,
            merchant_id=self.merchant_id,
            status=DRAFT,
            content=content,
            created_at=now,
            payment_token=_new_token(),
        )
        self.invoices[number] = invoice
        outcome = Outcome(invoice=invoice, http_status=201)
        if not data.send_immediately:
            invoice.record("DRAFT", now)
            return outcome
        invoice.status = CREATED
        invoice.record("CREATE", now)
        if data.delivery_mode == "Email":
            if invoice.email is None or email_fails:
                # Stored and published, but the e-mail could not go out: Cybersource's 202 ACCEPTED.
                outcome.http_status = 202
                outcome.email_failed = True
                return outcome
            invoice.status = SENT
            invoice.send_email("SEND", now)
            outcome.events.append(EVENT_SEND)
        return outcome

    def update(self, invoice_id: str, data: InvoiceInput, now: datetime) -> Outcome:
        invoice = self.get(invoice_id)
        if invoice.status not in {DRAFT, CREATED, SENT}:
            raise ActionNotAllowed()
        old_email = invoice.email
        content = data.content
        # Full replacement, except what the PUT body cannot carry: the number and the partner
        # reference.
        content["invoiceInformation"]["invoiceNumber"] = invoice.id
        if "clientReferenceInformation" in invoice.content:
            content["clientReferenceInformation"] = invoice.content["clientReferenceInformation"]
        invoice.content = content
        if invoice.email != old_email:
            invoice.payment_token = (
                _new_token()
            )  # README: a new address makes the old link stop working
        invoice.record("UPDATE", now)
        return Outcome(invoice=invoice)

    def publish(self, invoice_id: str, now: datetime) -> Outcome:
        invoice = self.get(invoice_id)
        if invoice.status != DRAFT:
            raise ActionNotAllowed()
        invoice.status = CREATED
        invoice.record("CREATE", now)
        return Outcome(invoice=invoice)

    def send(self, invoice_id: str, now: datetime) -> Outcome:
        invoice = self.get(invoice_id)
        by_email = invoice.info.get("deliveryMode") == "Email"
        outcome = Outcome(invoice=invoice)
        if invoice.status in {SENT, PARTIAL}:
            if invoice.email is None:
                raise MissingEmail()
            invoice.send_email("RESEND", now)
            outcome.events.append(EVENT_PARTIAL_RESEND if invoice.status == PARTIAL else EVENT_SEND)
        elif invoice.status == DRAFT:
            if by_email and invoice.email is None:
                raise MissingEmail()
            invoice.status = CREATED
            invoice.record("CREATE", now)
            if by_email:
                invoice.status = SENT
                invoice.send_email("SEND", now)
                outcome.events.append(EVENT_SEND)
        elif invoice.status == CREATED and by_email:
            if invoice.email is None:
                raise MissingEmail()
            invoice.status = SENT
            invoice.send_email("SEND", now)
            outcome.events.append(EVENT_SEND)
        else:
            # PAID, CANCELED, PENDING, and CREATED with deliveryMode None (nothing to deliver).
            raise ActionNotAllowed()
        return outcome

    def cancel(self, invoice_id: str, now: datetime) -> Outcome:
        invoice = self.get(invoice_id)
        if invoice.status not in {DRAFT, CREATED, SENT}:
            raise ActionNotAllowed()
        invoice.status = CANCELED
        invoice.record("CANCEL", now)
        return Outcome(invoice=invoice, events=[EVENT_CANCEL])

    def _payable(self, invoice_id: str) -> Invoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise PaymentRefused(
                404, f"invoice {invoice_id!r} does not exist for merchant {self.merchant_id!r}"
            )
        return invoice

    def pay(self, invoice_id: str, amount: Decimal, now: datetime, review: bool = False) -> Outcome:
        """A payer pays through the link (not an API call): README's last lifecycle row.

        With `review`, the payment waits for a decision instead (`decide`): the invoice goes to
        PENDING with a PENDING history entry, its balance unchanged, and no webhook (none is
        documented for it).
        """
        invoice = self._payable(invoice_id)
        if invoice.status == PENDING:
            raise PaymentRefused(409, "a payment of this invoice is pending a decision")
        if invoice.status not in {CREATED, SENT, PARTIAL}:
            raise PaymentRefused(409, f"an invoice in status {invoice.status} cannot be paid")
        balance = invoice.balance
        if amount > balance:
            raise PaymentRefused(422, f"overpayment: {amount} is more than the balance {balance}")
        if amount < balance:
            if not invoice.info.get("allowPartialPayments"):
                raise PaymentRefused(422, "partial payments are not allowed for this invoice")
            minimum = invoice.amount_details.get("minimumPartialAmount")
            if minimum is not None and amount < Decimal(minimum):
                raise PaymentRefused(422, f"{amount} is below the minimum partial amount {minimum}")
        transaction = {
            "transactionId": "".join(secrets.choice("0123456789") for _ in range(22)),
            "amount": format_money(amount, str(amount), invoice.amount_details["totalAmount"]),
        }
        if review:
            invoice.pending = PendingPayment(
                amount=amount, previous_status=invoice.status, transaction=transaction
            )
            invoice.status = PENDING
            invoice.record("PENDING", now, dict(transaction))
            return Outcome(invoice=invoice)
        return self._apply_payment(invoice, amount, transaction, now)

    def remind(self, invoice_id: str, overdue: bool, now: datetime) -> Outcome:
        """A reminder e-mail (Cybersource sends them five days before the due date, and one day
        after it when overdue, if reminders are on): a REMINDER history entry and the reminder
        webhook."""
        invoice = self._payable(invoice_id)
        if invoice.status not in {SENT, PARTIAL}:
            raise PaymentRefused(409, f"an invoice in status {invoice.status} gets no reminder")
        if invoice.email is None:
            raise PaymentRefused(409, "the invoice has no e-mail address to remind")
        invoice.send_email("REMINDER", now)
        return Outcome(
            invoice=invoice, events=[EVENT_OVERDUE_REMINDER if overdue else EVENT_REMINDER]
        )

    def decide(self, invoice_id: str, accept: bool, now: datetime) -> Outcome:
        """The decision on a PENDING payment: accepted it is applied as any payment (history,
        status, webhook); rejected it adds a REJECTED entry and the invoice returns to its status
        before, silently.
        """
        invoice = self._payable(invoice_id)
        pending = invoice.pending
        if invoice.status != PENDING or pending is None:
            raise PaymentRefused(
                409, f"an invoice in status {invoice.status} has no pending payment"
            )
        invoice.pending = None
        if accept:
            # Nothing can change the balance while PENDING (update and payments are refused).
            return self._apply_payment(invoice, pending.amount, dict(pending.transaction), now)
        invoice.status = pending.previous_status
        invoice.record("REJECTED", now, dict(pending.transaction))
        return Outcome(invoice=invoice)

    @staticmethod
    def _apply_payment(
        invoice: Invoice, amount: Decimal, transaction: dict[str, str], now: datetime
    ) -> Outcome:
        invoice.paid += amount
        invoice.record("PAYMENT", now, transaction)
        if invoice.balance == 0:
            invoice.status = PAID
            return Outcome(invoice=invoice, events=[EVENT_PAID])
        invoice.status = PARTIAL
        return Outcome(invoice=invoice, events=[EVENT_PARTIAL_PAYMENT])

    def page(self, offset: int, limit: int, status: str | None) -> tuple[int, list[Invoice]]:
        """Newest first, as in the spec's list example; `offset` counts invoices, not pages."""
        newest_first = reversed(self.invoices.values())
        if status is None:  # the common case stays cheap however many invoices a load test made
            return len(self.invoices), list(islice(newest_first, offset, offset + limit))
        matching = [inv for inv in newest_first if inv.status == status]
        return len(matching), matching[offset : offset + limit]


class SimulatorState:
    """All merchants' books. `reset()` empties everything but keeps the configured merchants."""

    def __init__(self, merchant_ids: list[str], first_number: int) -> None:
        self._merchant_ids = list(merchant_ids)
        self._first_number = first_number
        self.books: dict[str, MerchantBook] = {}
        self.reset()

    def reset(self) -> None:
        self.books = {m: MerchantBook(m, self._first_number) for m in self._merchant_ids}

    def book(self, merchant_id: str) -> MerchantBook:
        return self.books[merchant_id]
