"""Business checks on an invoice body beyond its types: refusals, and Cybersource's totals rule.

Refusals (`check_invoice`, always applied, README "Validation"): amounts with more decimals than the
currency has (Cybersource would silently truncate them), a total that is not positive, a minimum
partial amount without partial payments or above the total, an expiration before the due date, and
no e-mail address for an invoice that is to be e-mailed now.

Totals (`totals_warnings`, README "Validation", the rule all of Cybersource's own examples satisfy):

- with `subAmount`: totalAmount = subAmount - discount. Tax and freight are already inside subAmount
  (the SDK sample: 21 x 120.08 + 208.04 tax + 20.00 freight = 2749.72; 2749.72 - 126.08 = 2623.64);
- without `subAmount`, when every line item carries its `totalAmount`: totalAmount = the sum of the
  line totals + tax + freight - discount (the developer guide: 241 + 52.5 = 293.5);
- otherwise there is nothing to check;
- discount = `discountAmount`, else subtotal x `discountPercent` / 100, truncated to the currency's
  minor unit (Cybersource truncates, it does not round); the comparison is exact.

Line totals are not recomputed: the spec's own line items (20 x 12.05 less 13.04, "247.86") do not
follow any arithmetic, and Cybersource accepts them.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

from app.invoices.currencies import currency_exponent
from app.invoices.schemas import AmountDetails, InvoiceUpdate

FieldError = dict[str, str]
TOTALS_CODE = "totals_inconsistent"


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _exponent(currency: str) -> int:
    exponent = currency_exponent(currency)
    return 2 if exponent is None else exponent  # the schema refused unknown codes already


def _precision(errors: list[FieldError], field: str, value: str | None, currency: str) -> None:
    exponent = _exponent(currency)
    if value is None or "." not in value or len(value.split(".")[1]) <= exponent:
        return
    truncated = Decimal(value).quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_DOWN)
    errors.append(
        {
            "field": field,
            "message": (
                f"has more than {exponent} decimals, the minor unit of {currency}; Cybersource "
                f"would silently truncate it to {truncated}"
            ),
        }
    )


def check_invoice(body: InvoiceUpdate) -> list[FieldError]:
    """Refusals, each naming its field; empty when the body is acceptable."""
    info, amounts = body.invoiceInformation, body.orderInformation.amountDetails
    currency = amounts.currency
    errors: list[FieldError] = []
    base = "orderInformation.amountDetails"
    for name in ("totalAmount", "discountAmount", "subAmount", "minimumPartialAmount"):
        _precision(errors, f"{base}.{name}", getattr(amounts, name), currency)
    if amounts.taxDetails is not None:
        _precision(errors, f"{base}.taxDetails.amount", amounts.taxDetails.amount, currency)
    if amounts.freight is not None:
        _precision(errors, f"{base}.freight.amount", amounts.freight.amount, currency)
    for index, item in enumerate(body.orderInformation.lineItems or []):
        for name in ("unitPrice", "discountAmount", "taxAmount", "totalAmount"):
            field = f"orderInformation.lineItems[{index}].{name}"
            _precision(errors, field, getattr(item, name), currency)

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
    if info.sendImmediately and info.deliveryMode == "email" and not customer_email:
        errors.append(
            {
                "field": "customerInformation.email",
                "message": (
                    "is required to e-mail the invoice (sendImmediately with deliveryMode email)"
                ),
            }
        )
    return errors


def _discount(amounts: AmountDetails, subtotal: Decimal, unit: Decimal) -> tuple[Decimal, str]:
    if amounts.discountAmount is not None:
        return Decimal(amounts.discountAmount), "discountAmount"
    if amounts.discountPercent is not None:
        discount = (subtotal * Decimal(amounts.discountPercent) / 100).quantize(unit, ROUND_DOWN)
        return discount, f"{amounts.discountPercent}% of it, truncated"
    return Decimal(0), ""


def totals_warnings(body: InvoiceUpdate) -> list[dict[str, str]]:
    """Where the totals break Cybersource's rule (module docstring); empty when they follow it."""
    amounts = body.orderInformation.amountDetails
    unit = Decimal(1).scaleb(-_exponent(amounts.currency))
    items = body.orderInformation.lineItems or []
    sub_amount = _dec(amounts.subAmount)
    if sub_amount is not None:
        subtotal, how = sub_amount, "subAmount"
    elif items and all(item.totalAmount is not None for item in items):
        lines = sum((Decimal(item.totalAmount or 0) for item in items), Decimal(0))
        tax = _dec(amounts.taxDetails.amount if amounts.taxDetails else None) or Decimal(0)
        freight = _dec(amounts.freight.amount if amounts.freight else None) or Decimal(0)
        subtotal, how = lines + tax + freight, "the line totals + tax + freight"
    else:
        return []
    discount, discount_how = _discount(amounts, subtotal, unit)
    expected = subtotal - discount
    total = Decimal(amounts.totalAmount)
    if total == expected:
        return []
    rule = f"{how} - {discount_how}" if discount_how else how
    return [
        {
            "code": TOTALS_CODE,
            "field": "orderInformation.amountDetails.totalAmount",
            "message": f"is {total} but Cybersource's rule ({rule}) gives {expected}",
        }
    ]


# The caller's own fields: stored by the facade, never sent to Cybersource.
FACADE_ONLY = frozenset({"externalReference", "metadata"})


def upstream_body(body: InvoiceUpdate, *, solution_id: str | None = None) -> dict[str, Any]:
    """The body in Cybersource's canonical wire form: what the caller set, nothing it left out.

    Amounts are decimal strings, quantity an integer, `productSku` (never `productSKU`),
    `deliveryMode` lowercase; explicit nulls are dropped. `solution_id` (the partner solution id
    from settings) goes into create bodies only: an update body has no clientReferenceInformation in
    Cybersource's schema.
    """
    data = body.model_dump(
        mode="json", exclude_unset=True, exclude_none=True, exclude=set(FACADE_ONLY)
    )
    if solution_id:
        partner = data.setdefault("clientReferenceInformation", {}).setdefault("partner", {})
        partner.setdefault("solutionId", solution_id)
    return data
