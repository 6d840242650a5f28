"""Stored invoice rows -> v1 invoice bodies."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from app.http.schemas import UpstreamError
from app.invoices.currencies import currency_exponent
from app.invoices.repository import InvoiceRow
from app.invoices.schemas import EmailFailure, InvoiceOut, InvoiceSync, InvoiceWarning
from app.invoices.upstream_state import supported_actions

CONTENT_KEYS = (
    "customerInformation",
    "processingInformation",
    "invoiceInformation",
    "orderInformation",
    "merchantDefinedFieldValues",
)


def _money_text(value: Decimal | None, currency: str) -> str | None:
    """An amount as text with the currency's decimals ("60.00", "1500" for JPY)."""
    if value is None:
        return None
    exponent = currency_exponent(currency)
    places = 2 if exponent is None else exponent
    return format(value.quantize(Decimal(1).scaleb(-places)), "f")


def invoice_out(row: InvoiceRow, pending_ids: Sequence[str] = ()) -> InvoiceOut:
    """The invoice as Cybersource last told us, falling back to what the caller asked for."""
    upstream = row.upstream or {}
    content = row.content
    merged = {key: upstream.get(key, content.get(key)) for key in CONTENT_KEYS}
    error = row.last_error
    notes = content.get("_facade") or {}
    email_failure = notes.get("emailFailure")
    actions = supported_actions(upstream)
    return InvoiceOut(
        invoiceNumber=row.invoice_number,
        merchantProfile=row.merchant_profile,
        owner=row.owner,
        status=row.status,
        paymentLink=row.payment_link,
        balanceAmount=_money_text(row.balance_amount, row.currency),
        sync=InvoiceSync(
            state=row.sync_state,
            pendingOperations=list(pending_ids),
            lastError=UpstreamError.model_validate(error) if error else None,
        ),
        customerInformation=merged["customerInformation"],
        processingInformation=merged["processingInformation"],
        invoiceInformation=merged["invoiceInformation"] or content["invoiceInformation"],
        orderInformation=merged["orderInformation"] or content["orderInformation"],
        merchantDefinedFieldValues=merged["merchantDefinedFieldValues"],
        merchantDefinedFieldValuesWithDefinition=upstream.get(
            "merchantDefinedFieldValuesWithDefinition"
        ),
        externalReference=row.external_reference,
        metadata=row.metadata,
        invoiceHistory=upstream.get("invoiceHistory"),
        warnings=[InvoiceWarning.model_validate(w) for w in notes.get("warnings") or []],
        emailFailure=EmailFailure.model_validate(email_failure) if email_failure else None,
        supportedActions=None if actions is None else sorted(actions),
        createdAt=row.created_at,
        updatedAt=row.updated_at,
    )
