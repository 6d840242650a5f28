"""Invoice use cases. A mutation writes the invoice row and its outbox command in the transaction of
its idempotency key, then answers from the command's outcome; nothing is sent upstream from here.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app import errors
from app.auth.principal import Caller
from app.http.mutations import Mutation
from app.idempotency.executor import Accepted, Enqueue, IdempotentExecutor, Outcome
from app.invoices.commands import COMMANDS, OperationKind
from app.invoices.listing import InvoiceQuery, next_cursor, page_request
from app.invoices.presenters import invoice_out
from app.invoices.repository import InvoiceFields, InvoiceRepository, InvoiceRow
from app.invoices.rules import FACADE_ONLY, check_invoice, totals_warnings, upstream_body
from app.invoices.schemas import InvoiceCreate, InvoiceOut, InvoicePage, InvoiceUpdate
from app.invoices.upstream_state import supported_actions
from app.observability import tracing
from app.observability.logging import get_logger
from app.observability.metrics import INVOICE_WARNINGS
from app.outbox.repository import OutboxRepository
from app.settings import Settings

log = get_logger(__name__)
# Where the facade keeps its own notes inside an invoice's stored content (warnings, e-mail
# failure).
FACADE_NOTES = "_facade"
# Allocated numbers that callers took before their range was reserved are skipped, this many at
# most.
MAX_NUMBER_SKIPS = 100


def invoice_fields(
    body: InvoiceUpdate,
    warnings: list[dict[str, str]] | None = None,
    *,
    stored: InvoiceRow | None = None,
) -> InvoiceFields:
    """The columns of `body`; an update that leaves out the caller's own fields keeps `stored`'s."""
    amounts = body.orderInformation.amountDetails
    customer = body.customerInformation
    content = body.model_dump(
        mode="json", exclude_unset=True, exclude_none=True, exclude=set(FACADE_ONLY)
    )
    content[FACADE_NOTES] = {"warnings": warnings or []}
    given = body.model_fields_set
    reference = body.externalReference
    metadata = body.metadata or {}
    if stored is not None and "externalReference" not in given:
        reference = stored.external_reference
    if stored is not None and "metadata" not in given:
        metadata = stored.metadata
    return InvoiceFields(
        currency=amounts.currency,
        total_amount=Decimal(amounts.totalAmount),
        customer_email=customer.email if customer else None,
        customer_name=customer.name if customer else None,
        due_date=body.invoiceInformation.dueDate,
        content=content,
        merchant_customer_id=customer.merchantCustomerId if customer else None,
        external_reference=reference,
        metadata=dict(metadata),
    )


def known_profile(settings: Settings, name: str) -> str:
    if name not in settings.merchant_profiles:
        raise errors.MalformedRequest(f"Unknown merchant profile {name!r}.")
    return name


def invoice_not_found(number: str, profile: str) -> errors.InvoiceNotFound:
    return errors.InvoiceNotFound(
        f"There is no invoice {number!r} for merchant profile {profile!r}."
    )


def transition_refusal(
    status: str, upstream: dict[str, Any] | None, kind: OperationKind
) -> str | None:
    """Why the stored state rules `kind` out, or None. Cybersource's `_supportedActions`, when its
    last answer carried them, decide; otherwise the status table of `commands.py` does."""
    actions = supported_actions(upstream)
    if actions is not None:
        if kind in actions:
            return None
        names = ", ".join(sorted(actions)) or "none"
        return f"Cybersource's last answer allows only: {names}"
    allowed = COMMANDS[kind].allowed_from or frozenset()
    if status in allowed:
        return None
    return f"{kind} is allowed from {', '.join(sorted(allowed))}"


class InvoiceService:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        reads: AsyncEngine,
        settings: Settings,
        executor: IdempotentExecutor,
    ):
        self.engine = engine
        self.reads = reads
        self.settings = settings
        self.executor = executor

    # --- commands, through the idempotency key ----------------------------------------------------

    async def create(
        self, caller: Caller, profile: str, body: InvoiceCreate, request: Mutation
    ) -> tuple[Outcome, bool]:
        return await self._run(
            caller,
            profile,
            request,
            body,
            lambda conn: self.enqueue_create(conn, caller, profile, body),
        )

    async def update(
        self, caller: Caller, profile: str, number: str, body: InvoiceUpdate, request: Mutation
    ) -> tuple[Outcome, bool]:
        return await self._run(
            caller,
            profile,
            request,
            body,
            lambda conn: self.enqueue_update(conn, caller, profile, number, body),
        )

    async def act(
        self, caller: Caller, profile: str, number: str, kind: OperationKind, request: Mutation
    ) -> tuple[Outcome, bool]:
        return await self._run(
            caller,
            profile,
            request,
            None,
            lambda conn: self.enqueue_action(conn, caller, profile, number, kind),
        )

    async def _run(
        self,
        caller: Caller,
        profile: str,
        request: Mutation,
        body: InvoiceUpdate | None,
        enqueue: Enqueue,
    ) -> tuple[Outcome, bool]:
        meaning = None if body is None else body.model_dump(mode="json", exclude_unset=True)
        return await self.executor.run_request(
            caller,
            request,
            meaning,
            enqueue,
            scope=profile,
            wait_seconds=request.wait(self.settings.request_wait_seconds),
            replay_wait_seconds=request.replay_wait,
        )

    # --- the writes of each command (inside the key's transaction) --------------------------------

    async def enqueue_create(
        self, conn: AsyncConnection, caller: Caller, profile: str, body: InvoiceCreate
    ) -> Accepted:
        profile = known_profile(self.settings, profile)
        warnings = self._validate(body)
        invoices = InvoiceRepository(conn)
        number = body.invoiceInformation.invoiceNumber
        if number is None:
            invoice_id, body = await self._insert_allocated(
                invoices, caller, profile, body, warnings
            )
        else:
            self._refuse_reserved(number)
            invoice_id = await invoices.insert(
                merchant_profile=profile,
                invoice_number=number,
                owner=caller.client,
                fields=invoice_fields(body, warnings),
            )
        if invoice_id is None:
            raise errors.InvoiceNumberTaken(
                f"Invoice number {number!r} is already used for merchant profile {profile!r}; "
                "invoice numbers can never be reused."
            )
        payload = upstream_body(body, solution_id=self.settings.cybersource_partner_solution_id)
        return await self._enqueue(conn, invoice_id, caller, profile, OperationKind.CREATE, payload)

    async def _insert_allocated(
        self,
        invoices: InvoiceRepository,
        caller: Caller,
        profile: str,
        body: InvoiceCreate,
        warnings: list[dict[str, str]],
    ) -> tuple[int | None, InvoiceCreate]:
        """Allocate the next number and insert; a number a caller took already is skipped."""
        settings = self.settings
        for _ in range(MAX_NUMBER_SKIPS):
            gapless = settings.invoice_number_mode == "gapless"
            counter = await invoices.next_number(profile, gapless=gapless)
            number = f"{settings.invoice_number_prefix}{counter:0{settings.invoice_number_width}d}"
            info = body.invoiceInformation.model_copy(update={"invoiceNumber": number})
            numbered = body.model_copy(update={"invoiceInformation": info})
            invoice_id = await invoices.insert(
                merchant_profile=profile,
                invoice_number=number,
                owner=caller.client,
                fields=invoice_fields(numbered, warnings),
            )
            if invoice_id is not None:
                return invoice_id, numbered
            log.warning("invoice_number.skipped", invoice_number=number, profile=profile)
        raise errors.ServiceUnavailable(
            f"{MAX_NUMBER_SKIPS} allocated invoice numbers in a row were taken; "
            "nothing was applied.",
            headers={"Retry-After": "1"},
        )

    def _refuse_reserved(self, number: str) -> None:
        """Caller-chosen numbers may not take the allocator's shape, so an allocation never meets
        one."""
        prefix, width = self.settings.invoice_number_prefix, self.settings.invoice_number_width
        if re.fullmatch(rf"{re.escape(prefix)}[0-9]{{{width},}}", number, flags=re.IGNORECASE):
            raise errors.InvoiceNumberReserved(
                f"Invoice numbers of the form {prefix}{'0' * width} ({prefix!r} and at "
                f"least {width} digits) are the ones the facade allocates; choose another number "
                "or leave invoiceInformation.invoiceNumber out.",
                errors=[
                    {
                        "field": "invoiceInformation.invoiceNumber",
                        "message": (
                            f"has the shape of the facade's own numbers ({prefix!r} + digits)"
                        ),
                    }
                ],
            )

    async def enqueue_update(
        self, conn: AsyncConnection, caller: Caller, profile: str, number: str, body: InvoiceUpdate
    ) -> Accepted:
        warnings = self._validate(body)
        invoice = await self._owned(conn, caller, profile, number, for_update=True)
        await self._check_transition(conn, invoice, OperationKind.UPDATE)
        fields = invoice_fields(body, warnings, stored=invoice)
        await InvoiceRepository(conn).replace_content(invoice.id, fields)
        return await self._enqueue(
            conn, invoice.id, caller, profile, OperationKind.UPDATE, upstream_body(body)
        )

    async def enqueue_action(
        self, conn: AsyncConnection, caller: Caller, profile: str, number: str, kind: OperationKind
    ) -> Accepted:
        invoice = await self._owned(conn, caller, profile, number, for_update=True)
        await self._check_transition(conn, invoice, kind)
        await InvoiceRepository(conn).mark_pending(invoice.id)
        return await self._enqueue(conn, invoice.id, caller, profile, kind, None)

    def _validate(self, body: InvoiceUpdate) -> list[dict[str, str]]:
        """Refuse what breaks a rule; return the totals warnings (refused too with
        INVOICE_TOTALS=strict)."""
        problems = check_invoice(body)
        mode = self.settings.invoice_totals
        warnings = [] if mode == "pass-through" else totals_warnings(body)
        if mode == "strict":
            problems += [{"field": w["field"], "message": w["message"]} for w in warnings]
        if problems:
            raise errors.ValidationFailed(
                "The invoice does not add up or breaks a rule; see `errors`.", errors=problems
            )
        for warning in warnings:
            INVOICE_WARNINGS.labels(warning["code"]).inc()
        if warnings:
            log.info(
                "invoice.totals_warning",
                warnings=[w["code"] for w in warnings],
                fields=[w["field"] for w in warnings],
            )
        return warnings

    async def _owned(
        self,
        conn: AsyncConnection,
        caller: Caller,
        profile: str,
        number: str,
        *,
        for_update: bool = False,
    ) -> InvoiceRow:
        row = await InvoiceRepository(conn).get(
            known_profile(self.settings, profile), number, for_update=for_update
        )
        if row is None or not caller.may_see(row.owner, row.merchant_profile):
            raise invoice_not_found(number, profile)
        return row

    async def _check_transition(
        self, conn: AsyncConnection, invoice: InvoiceRow, kind: OperationKind
    ) -> None:
        """Refuse locally what Cybersource would refuse, when the stored state is known to be
        current."""
        if await OutboxRepository(conn).has_unfinished(invoice.id):
            return  # earlier commands are queued: Cybersource decides once they are through
        status = invoice.status
        if status is None:
            raise errors.ActionNotAllowed(
                f"Invoice {invoice.invoice_number} does not exist at Cybersource: "
                "its create failed (see sync.lastError); retry that operation first."
            )
        refusal = transition_refusal(status, invoice.upstream, kind)
        if refusal is not None:
            raise errors.ActionNotAllowed(
                f"Cannot {kind} invoice {invoice.invoice_number} while it is {status}; {refusal}.",
                invoiceStatus=status,
            )

    async def _enqueue(
        self,
        conn: AsyncConnection,
        invoice_id: int,
        caller: Caller,
        profile: str,
        kind: OperationKind,
        payload: dict[str, Any] | None,
    ) -> Accepted:
        operation_id = uuid.uuid4()
        await OutboxRepository(conn).insert(
            operation_id=operation_id,
            invoice_id=invoice_id,
            merchant_profile=profile,
            kind=kind,
            payload=payload,
            requested_by=caller.client,
            traceparent=tracing.current_traceparent(),
        )
        return Accepted(operation_id)

    # --- reads ------------------------------------------------------------------------------------

    async def get(self, caller: Caller, profile: str, number: str) -> InvoiceOut:
        async with self.reads.connect() as conn:
            row = await InvoiceRepository(conn).get_view(
                known_profile(self.settings, profile), number
            )
        if row is None or not caller.may_see(row.owner, row.merchant_profile):
            raise invoice_not_found(number, profile)
        return invoice_out(row, row.pending_ids)

    async def page(self, caller: Caller, query: InvoiceQuery) -> InvoicePage:
        filters, after = page_request(query, owner=caller.owner_filter(query.owner))
        async with self.reads.connect() as conn:
            rows = await InvoiceRepository(conn).list_sorted(
                filters, query.sort, after=after, limit=query.limit + 1
            )
        page, more = rows[: query.limit], len(rows) > query.limit
        cursor = next_cursor(query.sort, page[-1]) if more else None
        return InvoicePage(items=[invoice_out(row) for row in page], nextCursor=cursor)
