"""Stored command rows -> v1 operation bodies, and the problem a failed command answers with."""

from __future__ import annotations

from app import errors
from app.http.schemas import UpstreamError
from app.invoices.commands import OperationKind
from app.kit.upstream_errors import command_problem
from app.outbox.repository import OperationRow
from app.outbox.schemas import OperationOut


def operation_out(row: OperationRow) -> OperationOut:
    error = row.last_error
    return OperationOut(
        id=str(row.id),
        kind=OperationKind(row.kind),
        state=row.state,
        invoiceNumber=row.invoice_number,
        merchantProfile=row.merchant_profile,
        attempts=row.attempts,
        lastError=UpstreamError.model_validate(error) if error else None,
        createdAt=row.created_at,
        updatedAt=row.updated_at,
        completedAt=row.completed_at,
        links={"self": f"/v1/operations/{row.id}", "invoice": f"/v1/invoices/{row.invoice_number}"},
    )


def failure_problem(operation: OperationRow) -> errors.ApiError:
    error = operation.last_error or {}
    upstream = UpstreamError.model_validate(error).model_dump(mode="json") if error else None
    return command_problem(
        error,
        kind=operation.kind,
        invoice_number=operation.invoice_number,
        operation_id=str(operation.id),
        upstream=upstream,
    )
