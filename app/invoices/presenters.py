"""Turn stored rows into v1 response bodies (InvoiceOut, OperationOut, EventOut, problems)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import RowMapping

from app import errors
from app.errors import ApiError
from app.invoices.rules import currency_exponent
from app.invoices.schemas import EventOut, InvoiceOut, InvoiceSync, OperationOut, UpstreamError

SUCCESS_STATUS = {"create": 201, "update": 200, "publish": 200, "send": 200, "cancel": 200}
CONTENT_KEYS = ("customerInformation", "processingInformation", "invoiceInformation", "orderInformation",
                "merchantDefinedFieldValues")


def _money_text(value: Decimal | None, currency: str) -> str | None:
    """An amount as text with the currency's decimals ("60.00", "1500" for JPY)."""
    if value is None:
        return None
    return format(value.quantize(Decimal(1).scaleb(-currency_exponent(currency))), "f")


def invoice_out(row: RowMapping, pending_ids: Sequence[str] = ()) -> InvoiceOut:
    """The invoice as Cybersource last told us, falling back to what the caller asked for."""
    upstream = row["upstream"] or {}
    content = row["content"]
    merged = {key: upstream.get(key, content.get(key)) for key in CONTENT_KEYS}
    error = row["last_error"]
    return InvoiceOut(
        invoiceNumber=row["invoice_number"],
        merchantProfile=row["merchant_profile"],
        owner=row["owner"],
        status=row["status"],
        paymentLink=row["payment_link"],
        balanceAmount=_money_text(row["balance_amount"], row["currency"]),
        sync=InvoiceSync(state=row["sync_state"], pendingOperations=list(pending_ids),
                         lastError=UpstreamError.model_validate(error) if error else None),
        customerInformation=merged["customerInformation"],
        processingInformation=merged["processingInformation"],
        invoiceInformation=merged["invoiceInformation"] or content["invoiceInformation"],
        orderInformation=merged["orderInformation"] or content["orderInformation"],
        merchantDefinedFieldValues=merged["merchantDefinedFieldValues"],
        invoiceHistory=upstream.get("invoiceHistory"),
        createdAt=row["created_at"],
        updatedAt=row["updated_at"],
    )


def operation_out(row: RowMapping) -> OperationOut:
    error = row["last_error"]
    return OperationOut(
        id=str(row["id"]), kind=row["kind"], state=row["state"], invoiceNumber=row["invoice_number"],
        merchantProfile=row["merchant_profile"], attempts=row["attempts"],
        lastError=UpstreamError.model_validate(error) if error else None,
        createdAt=row["created_at"], updatedAt=row["updated_at"], completedAt=row["completed_at"],
        links={"self": f"/v1/operations/{row['id']}", "invoice": f"/v1/invoices/{row['invoice_number']}"},
    )


def event_out(row: RowMapping) -> EventOut:
    return EventOut(id=row["id"], type=row["type"], invoiceNumber=row["invoice_number"],
                    merchantProfile=row["merchant_profile"],
                    operationId=None if row["operation_id"] is None else str(row["operation_id"]),
                    data=row["data"], createdAt=row["created_at"])


def failure_problem(operation: RowMapping) -> ApiError:
    """The problem a failed command answers with: Cybersource's refusal, or that it could not be reached."""
    error = operation["last_error"] or {}
    upstream = UpstreamError.model_validate(error) if error else None
    reason = (error.get("reason") or "").upper()
    common: dict[str, Any] = {"operationId": str(operation["id"]),
              "upstream": upstream.model_dump(mode="json") if upstream else None}
    message = error.get("message") or "Cybersource refused the request"
    if error.get("kind") == "rejected":
        if reason == "DUPLICATE_RECORD":
            return errors.InvoiceNumberTaken(
                f"Cybersource already has invoice {operation['invoice_number']}: {message}", **common)
        if reason == "ACTION_NOT_ALLOWED":
            return errors.ActionNotAllowed(
                f"Cybersource does not allow {operation['kind']} in the invoice's current state: {message}",
                **common)
        fields = [{"field": d.get("field"), "message": d.get("reason") or d.get("message")}
                  for d in error.get("details") or []]
        return errors.UpstreamRejected(f"Cybersource rejected the {operation['kind']}: {message}",
                                       errors=fields or None, **common)
    return errors.UpstreamUnavailable(
        f"The {operation['kind']} could not be delivered to Cybersource: {message}", **common)


# --- cursors --------------------------------------------------------------------------------------


def encode_cursor(*parts: Any) -> str:
    text = "|".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise errors.MalformedRequest("The cursor is not one this API handed out.") from exc
    if len(parts) != count:
        raise errors.MalformedRequest("The cursor is not one this API handed out.")
    return parts
