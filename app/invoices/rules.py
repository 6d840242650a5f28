"""Business checks on an invoice body beyond its types: money arithmetic and field combinations.

Cybersource does not recompute totals (its own samples do not add up), so the facade checks them, unless
INVOICE_TOTALS=pass-through. The rules, all in the currency's minor unit:

- line subtotal = quantity x unitPrice; discount = discountAmount, else subtotal x discountPercent / 100;
  tax = taxAmount, else (subtotal - discount) x taxRate / 100; line total = subtotal - discount + tax.
  A given line `totalAmount` must equal it.
- base = subAmount if given (it must equal the sum of line totals when there are lines), else the sum
  of line totals; invoice discount = discountAmount, else base x discountPercent / 100;
  total = base - discount + taxDetails.amount + freight.amount. Checked when there is a base.
- Each comparison allows one minor unit of rounding difference.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from app.invoices.schemas import InvoiceUpdate, LineItem

# ISO 4217 minor units that differ from 2.
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}

FieldError = dict[str, str]


def currency_exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS.get(currency, 2)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


class _Checker:
    def __init__(self, currency: str) -> None:
        self.exponent = currency_exponent(currency)
        self.unit = Decimal(1).scaleb(-self.exponent)
        self.errors: list[FieldError] = []

    def round(self, value: Decimal) -> Decimal:
        return value.quantize(self.unit, rounding=ROUND_HALF_UP)

    def precision(self, field: str, value: str | None) -> None:
        if value is not None and "." in value and len(value.split(".")[1]) > self.exponent:
            self.errors.append(
                {
                    "field": field,
                    "message": f"has more than {self.exponent} decimals for this currency",
                }
            )

    def equal(self, field: str, given: Decimal, expected: Decimal, how: str) -> None:
        if abs(given - self.round(expected)) > self.unit:
            self.errors.append(
                {"field": field, "message": f"is {given} but {how} gives {self.round(expected)}"}
            )


def _line_total(check: _Checker, item: LineItem) -> Decimal:
    subtotal = item.quantity * Decimal(item.unitPrice)
    discount = _dec(item.discountAmount)
    if discount is None:
        discount = subtotal * Decimal(item.discountPercent or 0) / 100
    tax = _dec(item.taxAmount)
    if tax is None:
        tax = (subtotal - discount) * Decimal(item.taxRate or 0) / 100
    return check.round(subtotal - discount + tax)


def check_invoice(body: InvoiceUpdate, *, check_totals: bool) -> list[FieldError]:
    """Errors of the body, each naming its field; empty when the body is acceptable."""
    info, amounts = body.invoiceInformation, body.orderInformation.amountDetails
    check = _Checker(amounts.currency)
    errors = check.errors
    base = "orderInformation.amountDetails"
    for name in ("totalAmount", "discountAmount", "subAmount", "minimumPartialAmount"):
        check.precision(f"{base}.{name}", getattr(amounts, name))
    if amounts.taxDetails is not None:
        check.precision(f"{base}.taxDetails.amount", amounts.taxDetails.amount)
    if amounts.freight is not None:
        check.precision(f"{base}.freight.amount", amounts.freight.amount)
    for index, item in enumerate(body.orderInformation.lineItems or []):
        for name in ("unitPrice", "discountAmount", "taxAmount", "totalAmount"):
            check.precision(f"orderInformation.lineItems[{index}].{name}", getattr(item, name))

    total = Decimal(amounts.totalAmount)
    if total <= 0:
        errors.append({"field": f"{base}.totalAmount", "message": "must be greater than zero"})
    if amounts.minimumPartialAmount is not None:
        if not info.allowPartialPayments:
            errors.append(
                {
                    "field": f"{base}.minimumPartialAmount",
                    "message": "is only allowed with invoiceInformation.allowPartialPayments=true",
                }
            )
        elif Decimal(amounts.minimumPartialAmount) > total:
            errors.append(
                {"field": f"{base}.minimumPartialAmount", "message": "is above the invoice total"}
            )
    if info.expirationDate is not None and info.expirationDate < info.dueDate:
        errors.append(
            {"field": "invoiceInformation.expirationDate", "message": "is before the due date"}
        )
    customer_email = body.customerInformation.email if body.customerInformation else None
    if info.sendImmediately and info.deliveryMode.lower() == "email" and not customer_email:
        errors.append(
            {
                "field": "customerInformation.email",
                "message": "is required to e-mail the invoice (sendImmediately with deliveryMode email)",
            }
        )
    if errors or not check_totals:
        return errors

    line_totals = []
    for index, item in enumerate(body.orderInformation.lineItems or []):
        computed = _line_total(check, item)
        if item.totalAmount is not None:
            check.equal(
                f"orderInformation.lineItems[{index}].totalAmount",
                Decimal(item.totalAmount),
                computed,
                "quantity x unitPrice - discount + tax",
            )
        line_totals.append(computed)
    subtotal = _dec(amounts.subAmount)
    if line_totals and subtotal is not None:
        check.equal(
            f"{base}.subAmount",
            subtotal,
            sum(line_totals, Decimal(0)),
            "the sum of the line totals",
        )
    if subtotal is None and line_totals:
        subtotal = sum(line_totals, Decimal(0))
    if subtotal is not None:
        discount = _dec(amounts.discountAmount)
        if discount is None:
            discount = subtotal * Decimal(amounts.discountPercent or 0) / 100
        tax = _dec(amounts.taxDetails.amount if amounts.taxDetails else None) or Decimal(0)
        freight = _dec(amounts.freight.amount if amounts.freight else None) or Decimal(0)
        check.equal(
            f"{base}.totalAmount",
            total,
            subtotal - discount + tax + freight,
            "subtotal - discount + tax + freight",
        )
    return errors


def upstream_body(body: InvoiceUpdate, *, solution_id: str | None = None) -> dict[str, Any]:
    """The body in Cybersource's wire shape: field names kept, nothing unset sent.

    `solution_id` (the partner solution id from settings) goes into create bodies only: an update body
    has no clientReferenceInformation in Cybersource's schema.
    """
    data = body.model_dump(mode="json", exclude_none=True)
    info = data["invoiceInformation"]
    info["deliveryMode"] = info.get("deliveryMode", "email").lower()
    if solution_id:
        partner = data.setdefault("clientReferenceInformation", {}).setdefault("partner", {})
        partner.setdefault("solutionId", solution_id)
    return data
