"""The answer a command's request gets (and its idempotency key replays), read from the store as it
stands."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.idempotency.executor import Outcome
from app.invoices.commands import COMMANDS, OperationKind
from app.invoices.presenters import invoice_out
from app.invoices.repository import InvoiceRepository
from app.outbox.presenters import failure_problem, operation_out
from app.outbox.repository import OutboxRepository


async def command_outcome(
    conn: AsyncConnection, operation_id: uuid.UUID, *, accepted: bool = False
) -> Outcome:
    """The final result of a command, or 202 while it is on its way.

    `accepted`: 202 whatever the state (the caller asked not to wait: `Prefer: respond-async`).
    A command whose outcome is `unknown` answers 202 too: it may have been applied, so no failure is
    claimed; the operation (and an operator's re-drive) tells the rest.
    """
    operation = await OutboxRepository(conn).get(operation_id)
    if operation is None:
        raise errors.OperationNotFound(f"There is no operation {operation_id}.")
    number = operation.invoice_number
    kind = OperationKind(operation.kind)
    if operation.state == "succeeded" and not accepted:
        invoice = await InvoiceRepository(conn).get_view(operation.merchant_profile, number)
        assert invoice is not None  # invoices are never deleted
        headers = {"Location": f"/v1/invoices/{number}"} if kind is OperationKind.CREATE else {}
        body = invoice_out(invoice, invoice.pending_ids).model_dump(mode="json")
        return Outcome(COMMANDS[kind].success_status, body, headers)
    if operation.state in ("failed", "superseded") and not accepted:
        problem = failure_problem(operation)
        return Outcome(problem.status_code, problem.problem(), {})
    body = operation_out(operation).model_dump(mode="json")
    return Outcome(202, body, {"Location": f"/v1/operations/{operation_id}"})
