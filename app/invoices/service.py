"""Invoice use cases. Each mutating one writes the invoice row and its outbox command in the caller's
transaction (the idempotency flow owns the boundary); nothing is sent upstream from here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.cybersource.client import CybersourceClients
from app.cybersource.errors import AuthenticationError, CybersourceError, RejectedError
from app.invoices.presenters import SUCCESS_STATUS, failure_problem, invoice_out, operation_out
from app.invoices.repository import OUTBOX_CHANNEL, InvoiceFields, Repository
from app.invoices.rules import check_invoice, upstream_body
from app.invoices.schemas import InvoiceCreate, InvoiceOut, InvoiceUpdate
from app.invoices.upstream_state import COMMAND_EVENTS, UpstreamState, status_event
from app.settings import Settings

# Which Cybersource statuses allow each action (README's lifecycle table); PENDING allows nothing.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    "publish": frozenset({"DRAFT"}),
    "send": frozenset({"DRAFT", "CREATED", "SENT", "PARTIAL"}),
    "update": frozenset({"DRAFT", "CREATED", "SENT"}),
    "cancel": frozenset({"DRAFT", "CREATED", "SENT"}),
}


@dataclass(frozen=True, slots=True)
class Caller:
    client: str
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "invoices:admin" in self.scopes


@dataclass(frozen=True, slots=True)
class Accepted:
    """A command committed to the outbox; the answer comes when it finishes (or 202)."""

    operation_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Outcome:
    """A complete HTTP answer: what a request returns and what its idempotency key replays."""

    status: int
    body: Any
    headers: dict[str, str]


def invoice_fields(body: InvoiceUpdate) -> InvoiceFields:
    amounts = body.orderInformation.amountDetails
    customer = body.customerInformation
    return InvoiceFields(
        currency=amounts.currency,
        total_amount=Decimal(amounts.totalAmount),
        customer_email=customer.email if customer else None,
        customer_name=customer.name if customer else None,
        due_date=body.invoiceInformation.dueDate,
        content=body.model_dump(mode="json", exclude_none=True),
    )


class InvoiceService:
    def __init__(self, settings: Settings, clients: CybersourceClients) -> None:
        self.settings = settings
        self.clients = clients

    def _profile(self, name: str) -> str:
        if name not in self.settings.merchant_profiles:
            raise errors.MalformedRequest(f"Unknown merchant profile {name!r}.")
        return name

    def _validate(self, body: InvoiceUpdate) -> None:
        problems = check_invoice(body, check_totals=self.settings.invoice_totals == "check")
        if problems:
            raise errors.ValidationFailed("The invoice does not add up or breaks a rule; see `errors`.",
                                          errors=problems)

    async def _owned_invoice(self, repo: Repository, caller: Caller, profile: str, number: str, *,
                             for_update: bool = False) -> RowMapping:
        row = await repo.get_invoice(self._profile(profile), number, for_update=for_update)
        if row is None or (row["owner"] != caller.client and not caller.is_admin):
            raise errors.InvoiceNotFound(f"There is no invoice {number!r} for merchant profile {profile!r}.")
        return row

    async def _enqueue(self, repo: Repository, invoice: RowMapping | int, caller: Caller, profile: str, kind: str,
                       payload: dict[str, Any] | None) -> Accepted:
        invoice_id = invoice if isinstance(invoice, int) else int(invoice["id"])
        operation_id = uuid.uuid4()
        await repo.insert_operation(operation_id=operation_id, invoice_id=invoice_id, merchant_profile=profile,
                                    kind=kind, payload=payload, requested_by=caller.client)
        return Accepted(operation_id)

    # --- commands -----------------------------------------------------------------------------------

    async def create(self, conn: AsyncConnection, caller: Caller, profile: str, body: InvoiceCreate) -> Accepted:
        profile = self._profile(profile)
        self._validate(body)
        repo = Repository(conn)
        number = body.invoiceInformation.invoiceNumber
        if number is None:
            counter = await repo.next_invoice_number(profile, gapless=self.settings.invoice_number_mode == "gapless")
            number = f"{self.settings.invoice_number_prefix}{counter:0{self.settings.invoice_number_width}d}"
            body = body.model_copy(update={"invoiceInformation": body.invoiceInformation.model_copy(
                update={"invoiceNumber": number})})
        invoice_id = await repo.insert_invoice(merchant_profile=profile, invoice_number=number, owner=caller.client,
                                               fields=invoice_fields(body))
        if invoice_id is None:
            raise errors.InvoiceNumberTaken(f"Invoice number {number!r} is already used for merchant profile "
                                            f"{profile!r}; invoice numbers can never be reused.")
        payload = upstream_body(body, solution_id=self.settings.cybersource_partner_solution_id)
        return await self._enqueue(repo, invoice_id, caller, profile, "create", payload)

    async def _check_transition(self, repo: Repository, invoice: RowMapping, kind: str) -> None:
        """Refuse locally what Cybersource would refuse, when the stored state is known to be current."""
        if await repo.unfinished_operations(invoice["id"]):
            return  # earlier commands are queued: Cybersource decides once they are through
        status = invoice["status"]
        if status is None:
            raise errors.ActionNotAllowed(
                f"Invoice {invoice['invoice_number']} does not exist at Cybersource: its create failed "
                "(see sync.lastError); retry that operation first.")
        if status not in ALLOWED_FROM[kind]:
            allowed = ", ".join(sorted(ALLOWED_FROM[kind]))
            raise errors.ActionNotAllowed(
                f"Cannot {kind} invoice {invoice['invoice_number']} while it is {status}; "
                f"{kind} is allowed from {allowed}.", invoiceStatus=status)

    async def update(self, conn: AsyncConnection, caller: Caller, profile: str, number: str,
                     body: InvoiceUpdate) -> Accepted:
        self._validate(body)
        repo = Repository(conn)
        invoice = await self._owned_invoice(repo, caller, profile, number, for_update=True)
        await self._check_transition(repo, invoice, "update")
        await repo.replace_invoice_content(invoice["id"], invoice_fields(body))
        return await self._enqueue(repo, invoice, caller, profile, "update", upstream_body(body))

    async def act(self, conn: AsyncConnection, caller: Caller, profile: str, number: str, kind: str) -> Accepted:
        repo = Repository(conn)
        invoice = await self._owned_invoice(repo, caller, profile, number, for_update=True)
        await self._check_transition(repo, invoice, kind)
        await repo.mark_invoice_pending(invoice["id"])
        return await self._enqueue(repo, invoice, caller, profile, kind, None)

    # --- answers ------------------------------------------------------------------------------------

    async def outcome(self, conn: AsyncConnection, operation_id: uuid.UUID, *, accepted: bool = False) -> Outcome:
        """The answer for a command as it stands: the final result, or 202 while it is on its way.

        `accepted`: 202 whatever the state (the caller asked not to wait: `Prefer: respond-async`).
        """
        repo = Repository(conn)
        operation = await repo.get_operation(operation_id)
        if operation is None:
            raise errors.OperationNotFound(f"There is no operation {operation_id}.")
        number = operation["invoice_number"]
        if operation["state"] == "succeeded" and not accepted:
            invoice = await repo.get_invoice_with_pending(operation["merchant_profile"], number)
            assert invoice is not None
            headers = {"Location": f"/v1/invoices/{number}"} if operation["kind"] == "create" else {}
            body = invoice_out(invoice, invoice["pending_ids"]).model_dump(mode="json")
            return Outcome(SUCCESS_STATUS[operation["kind"]], body, headers)
        if operation["state"] == "failed" and not accepted:
            problem = failure_problem(operation)
            return Outcome(problem.status_code, problem.problem(), {})
        body = operation_out(operation).model_dump(mode="json")
        return Outcome(202, body, {"Location": f"/v1/operations/{operation_id}"})

    # --- reads --------------------------------------------------------------------------------------

    async def get(self, conn: AsyncConnection, caller: Caller, profile: str, number: str) -> InvoiceOut:
        row = await Repository(conn).get_invoice_with_pending(self._profile(profile), number)
        if row is None or (row["owner"] != caller.client and not caller.is_admin):
            raise errors.InvoiceNotFound(f"There is no invoice {number!r} for merchant profile {profile!r}.")
        return invoice_out(row, row["pending_ids"])

    async def owned(self, conn: AsyncConnection, caller: Caller, profile: str, number: str) -> RowMapping:
        """The caller's invoice row (404 for someone else's), as a starting point for a refresh."""
        return await self._owned_invoice(Repository(conn), caller, profile, number)

    async def read_upstream(self, profile: str, number: str) -> UpstreamState:
        """GET the invoice from Cybersource (no database connection is held meanwhile)."""
        try:
            result = await self.clients.get(profile).get_invoice(number)
        except AuthenticationError as exc:
            raise errors.UpstreamUnavailable("Cybersource refused the facade's credentials.") from exc
        except RejectedError as exc:
            raise errors.UpstreamRejected(f"Cybersource could not read the invoice: {exc.message}") from exc
        except CybersourceError as exc:
            raise errors.UpstreamUnavailable(f"Cybersource could not be reached: {exc.message}") from exc
        return UpstreamState.from_body(result.raw)

    async def record_observation(self, conn: AsyncConnection, profile: str, seen: RowMapping,
                                 state: UpstreamState) -> None:
        """Record `state`, read from Cybersource after `seen` was read from the store; the newest reading wins.

        The row is locked now. If another reading was recorded since `seen` (a command's answer, a webhook,
        a refresh, the reconciler), ours may be the older one: read again, holding the row this time, so
        nothing can be recorded in between. In the usual case no connection waits on Cybersource.
        """
        repo = Repository(conn)
        invoice = await repo.get_invoice_by_id(seen["id"], for_update=True)
        assert invoice is not None  # invoices are never deleted
        if invoice["checked_at"] != seen["checked_at"]:
            state = await self.read_upstream(profile, invoice["invoice_number"])
        await record_upstream_state(repo, invoice, state)


async def record_upstream_state(repo: Repository, invoice: RowMapping, state: UpstreamState) -> None:
    """Store what Cybersource reports outside our own commands (a refresh, a webhook), with its event."""
    await repo.apply_upstream_state(invoice["id"], status=state.status, payment_link=state.payment_link,
                                    balance_amount=state.balance_amount, upstream=state.body)
    event = status_event(invoice["status"], state.status)
    if event in COMMAND_EVENTS.values() and await repo.unfinished_operations(invoice["id"]):
        # Our own command is on its way and writes this event when the relay records it.
        event = None
    if event is not None:
        await repo.insert_event(event_type=event, invoice=invoice, operation_id=None,
                                data={"status": state.status, "previousStatus": invoice["status"],
                                      "balanceAmount": None if state.balance_amount is None
                                      else str(state.balance_amount),
                                      "observedAt": datetime.now().astimezone().isoformat()})


async def requeue_failed_operation(repo: Repository, operation_id: uuid.UUID) -> RowMapping:
    """Operators: put a command that failed for good back in the outbox (API and CLI)."""
    if await repo.get_operation(operation_id) is None:
        raise errors.OperationNotFound(f"There is no operation {operation_id}.")
    if await repo.retry_failed_operation(operation_id) is None:
        raise errors.OperationNotRetryable("Only an operation in state failed can be retried.")
    await repo.notify(OUTBOX_CHANNEL, str(operation_id))
    row = await repo.get_operation(operation_id)
    assert row is not None
    return row
