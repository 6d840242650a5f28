"""Request validation with Cybersource's limits, lenient where real traffic is (README "Limits and
formats").

Rules come from the spec fragment (maxLength, maxItems, minimum/maximum, formats) and the README's
quirks: amounts arrive as strings or JSON numbers, `quantity` as "20", the Python SDK writes
`productSKU`, line items carry explicit nulls, unknown fields appear (`firstName`), and
`description` is not enforced even though the spec lists it as required. Totals are never
recomputed: Cybersource does not do it either.
Every problem becomes a `details` entry
`{"field": <flattened path>, "reason": MISSING_FIELD|INVALID_DATA}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

MISSING = "MISSING_FIELD"
INVALID = "INVALID_DATA"

AMOUNT_RE = re.compile(r"^\d+(\.\d+)?$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")
# The response `id` has maxLength 26 in the spec; numbers that would not fit are refused at create.
# Characters are limited to what signer and server put into a path identically (AUTH.md).
INVOICE_NUMBER_RE = re.compile(r"^[A-Za-z0-9._~-]{1,26}$")
DELIVERY_MODES = {"none": "None", "email": "Email"}
MAX_LINE_ITEMS = 30

# (field, maxLength) of the amount-like strings, per object.
AMOUNT_DETAILS_FIELDS = (
    ("totalAmount", 19),
    ("discountAmount", 15),
    ("discountPercent", 7),
    ("subAmount", 25),
    ("minimumPartialAmount", 19),
)
TAX_DETAILS_FIELDS = (("amount", 13), ("rate", 6))
FREIGHT_FIELDS = (("amount", 13), ("taxRate", 7))
LINE_ITEM_AMOUNTS = (
    ("unitPrice", 15),
    ("discountAmount", 13),
    ("discountPercent", 6),
    ("taxAmount", 15),
    ("taxRate", 7),
    ("totalAmount", 13),
)


class ValidationFailed(Exception):
    """400 VALIDATION_ERROR with field-level details."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__(f"{len(details)} field(s) invalid")
        self.details = details


class Checker:
    """Collects problems so one answer lists all of them, as Cybersource's `details` array does."""

    def __init__(self) -> None:
        self.details: list[dict[str, str]] = []

    def fail(self, path: str, reason: str = INVALID) -> None:
        self.details.append({"field": path, "reason": reason})

    def raise_if_any(self) -> None:
        if self.details:
            raise ValidationFailed(self.details)

    # --- field helpers: each normalises `obj[key]` in place or drops it and records why ---

    def obj(
        self, parent: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> dict[str, Any] | None:
        value = parent.get(key)
        if value is None:
            parent.pop(key, None)
            if required:
                self.fail(path, MISSING)
            return None
        if not isinstance(value, dict):
            self.fail(path)
            parent.pop(key)
            return None
        cleaned = {
            k: v for k, v in value.items() if v is not None
        }  # explicit nulls mean "not given"
        parent[key] = cleaned
        return cleaned

    def text(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        *,
        max_len: int | None = None,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(path, MISSING)
            return None
        # Jackson-style leniency: a bare number where a string is expected is taken as its text.
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            value = format(value, "f") if isinstance(value, Decimal) else str(value)
        if (
            not isinstance(value, str)
            or (max_len is not None and len(value) > max_len)
            or (pattern is not None and not pattern.match(value))
        ):
            self.fail(path)
            obj.pop(key)
            return None
        obj[key] = value
        return value

    def amount(
        self, obj: dict[str, Any], key: str, path: str, *, max_len: int, required: bool = False
    ) -> Decimal | None:
        """Strings and JSON numbers are both accepted; the stored form is always the string."""
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(path, MISSING)
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            text = None
        elif isinstance(value, str):
            text = value.strip()
        else:
            text = format(value, "f") if isinstance(value, Decimal) else str(value)
        if text is None or not AMOUNT_RE.match(text) or len(text) > max_len:
            self.fail(path)
            obj.pop(key)
            return None
        obj[key] = text
        return Decimal(text)

    def boolean(self, obj: dict[str, Any], key: str, path: str) -> bool | None:
        value = obj.get(key)
        if value is None:
            return None
        # The spec's own examples send "true"/"false" as strings for some booleans.
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            value = value.lower() == "true"
        if not isinstance(value, bool):
            self.fail(path)
            obj.pop(key)
            return None
        obj[key] = value
        return value

    def date(self, obj: dict[str, Any], key: str, path: str, *, required: bool = False) -> None:
        value = self.text(obj, key, path, max_len=10, required=required, pattern=DATE_RE)
        if value is None:
            return
        try:
            date.fromisoformat(value)
        except ValueError:
            self.fail(path)
            obj.pop(key)

    def integer(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        required: bool = False,
    ) -> int | None:
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(path, MISSING)
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())  # spec examples send quantity as "20"
        elif isinstance(value, Decimal) and value == value.to_integral_value():
            value = int(value)
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
        ):
            self.fail(path)
            obj.pop(key)
            return None
        obj[key] = value
        return value


@dataclass(slots=True)
class InvoiceInput:
    """A validated create/update body: the content to store plus the instructions that are not
    content."""

    content: dict[str, Any]
    invoice_number: str | None
    send_immediately: bool
    delivery_mode: str  # "None" or "Email"


def validate_invoice(body: Any, *, for_update: bool) -> InvoiceInput:
    """Validate and normalise a createInvoice / updateInvoice body, or raise ValidationFailed."""
    c = Checker()
    if not isinstance(body, dict):
        raise ValidationFailed([{"field": "body", "reason": INVALID}])
    if "encryptedRequest" in body:
        # Message-level encryption is optional for invoicing and the simulator does not decrypt.
        raise ValidationFailed([{"field": "encryptedRequest", "reason": INVALID}])
    content = {k: v for k, v in body.items() if v is not None}

    partner = None
    if not for_update and (
        ref := c.obj(content, "clientReferenceInformation", "clientReferenceInformation")
    ):
        partner = c.obj(ref, "partner", "clientReferenceInformation.partner")
    if partner is not None:
        for key in ("developerId", "solutionId"):
            c.text(partner, key, f"clientReferenceInformation.partner.{key}", max_len=8)

    if customer := c.obj(content, "customerInformation", "customerInformation"):
        c.text(customer, "name", "customerInformation.name", max_len=100)
        email = c.text(customer, "email", "customerInformation.email", max_len=255)
        if email is not None and not EMAIL_RE.match(email):
            c.fail("customerInformation.email")
            customer.pop("email")
        c.text(
            customer, "merchantCustomerId", "customerInformation.merchantCustomerId", max_len=100
        )
        if company := c.obj(customer, "company", "customerInformation.company"):
            c.text(company, "name", "customerInformation.company.name", max_len=60)

    processing = c.obj(content, "processingInformation", "processingInformation")
    processing = processing if processing is not None else {}
    for key in ("requestPhone", "requestShipping"):
        if c.boolean(processing, key, f"processingInformation.{key}") is None:
            processing[key] = False  # spec default, echoed in every response example
    content["processingInformation"] = processing

    invoice_number, send_immediately, delivery_mode = None, False, "Email"
    if info := c.obj(content, "invoiceInformation", "invoiceInformation", required=True):
        number = info.pop("invoiceNumber", None)
        if not for_update and number is not None:
            info["invoiceNumber"] = number
            invoice_number = c.text(
                info, "invoiceNumber", "invoiceInformation.invoiceNumber", pattern=INVOICE_NUMBER_RE
            )
        c.text(info, "description", "invoiceInformation.description", max_len=2000)
        c.date(info, "dueDate", "invoiceInformation.dueDate", required=True)
        c.date(info, "expirationDate", "invoiceInformation.expirationDate")
        send_immediately = bool(
            c.boolean(info, "sendImmediately", "invoiceInformation.sendImmediately")
        )
        info.pop("sendImmediately", None)  # an instruction, not content; responses do not echo it
        if (
            c.boolean(info, "allowPartialPayments", "invoiceInformation.allowPartialPayments")
            is None
        ):
            info["allowPartialPayments"] = False
        mode = c.text(info, "deliveryMode", "invoiceInformation.deliveryMode")
        if mode is not None:
            # The spec lists None/Email, every sample sends none/email: compare case-insensitively.
            canonical = DELIVERY_MODES.get(mode.lower())
            if canonical is None:
                c.fail("invoiceInformation.deliveryMode")
            else:
                delivery_mode = canonical
        info["deliveryMode"] = delivery_mode
        info.pop("paymentLink", None)  # server-owned

    if order := c.obj(content, "orderInformation", "orderInformation", required=True):
        _validate_order(c, order)
    if (values := content.get("merchantDefinedFieldValues")) is not None:
        _validate_mdf_values(c, content, values)
    c.raise_if_any()
    return InvoiceInput(
        content=content,
        invoice_number=invoice_number,
        send_immediately=send_immediately,
        delivery_mode=delivery_mode,
    )


def _validate_order(c: Checker, order: dict[str, Any]) -> None:
    if amounts := c.obj(order, "amountDetails", "orderInformation.amountDetails", required=True):
        base = "orderInformation.amountDetails"
        for key, max_len in AMOUNT_DETAILS_FIELDS:
            c.amount(amounts, key, f"{base}.{key}", max_len=max_len, required=key == "totalAmount")
        amounts.pop("balanceAmount", None)  # server-owned
        currency = c.text(
            amounts, "currency", f"{base}.currency", required=True, pattern=CURRENCY_RE
        )
        if currency is not None:
            amounts["currency"] = currency.upper()
        if tax := c.obj(amounts, "taxDetails", f"{base}.taxDetails"):
            c.text(tax, "type", f"{base}.taxDetails.type")
            for key, max_len in TAX_DETAILS_FIELDS:
                c.amount(tax, key, f"{base}.taxDetails.{key}", max_len=max_len)
        if freight := c.obj(amounts, "freight", f"{base}.freight"):
            c.boolean(freight, "taxable", f"{base}.freight.taxable")
            for key, max_len in FREIGHT_FIELDS:
                c.amount(freight, key, f"{base}.freight.{key}", max_len=max_len)
    items = order.get("lineItems")
    if items is None:
        order.pop("lineItems", None)
        return
    if not isinstance(items, list) or len(items) > MAX_LINE_ITEMS:
        c.fail("orderInformation.lineItems")
        order.pop("lineItems")
        return
    cleaned: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        path = f"orderInformation.lineItems[{index}]"
        if not isinstance(item, dict):
            c.fail(path)
            continue
        line = {k: v for k, v in item.items() if v is not None}
        if "productSKU" in line:  # the Python SDK's spelling on the wire
            line.setdefault("productSku", line.pop("productSKU"))
        c.text(line, "productSku", f"{path}.productSku", max_len=255)
        c.text(line, "productName", f"{path}.productName", max_len=255)
        if item.get("quantity") is None:
            line["quantity"] = 1  # spec default
        c.integer(line, "quantity", f"{path}.quantity", minimum=1, maximum=999_999_999)
        for key, max_len in LINE_ITEM_AMOUNTS:
            c.amount(line, key, f"{path}.{key}", max_len=max_len)
        cleaned.append(line)
    order["lineItems"] = cleaned


def _validate_mdf_values(c: Checker, content: dict[str, Any], values: Any) -> None:
    if not isinstance(values, list):
        c.fail("merchantDefinedFieldValues")
        content.pop("merchantDefinedFieldValues")
        return
    cleaned = []
    for index, value in enumerate(values):
        path = f"merchantDefinedFieldValues[{index}]"
        if not isinstance(value, dict):
            c.fail(path)
            continue
        entry = {k: v for k, v in value.items() if v is not None}
        c.integer(entry, "definitionId", f"{path}.definitionId", minimum=0)
        c.text(entry, "value", f"{path}.value")
        cleaned.append(entry)
    content["merchantDefinedFieldValues"] = cleaned


def parse_amount(value: Any) -> Decimal | None:
    """An admin payment amount: a positive decimal given as a string or a number."""
    if isinstance(value, bool):
        return None
    text = format(value, "f") if isinstance(value, Decimal) else str(value).strip()
    if not AMOUNT_RE.match(text):
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount > 0 else None
