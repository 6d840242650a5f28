"""Adopting invoices made outside the facade (Business Center, another tool, before it was
installed).

An adoption reads the invoice from Cybersource and stores it under a chosen owner, in sync and just
seen, with an `invoice.adopted` event: from then on every route, the webhooks and the status
reconciler treat it as any other invoice. It is a read and a store write, never an outbox command:
nothing is sent to Cybersource. Three doors lead here: `POST /v1/invoices/{invoiceNumber}/adopt`
(admins, under an Idempotency-Key), `invoicing-gateway invoices import` (in bulk), and a
notification about an invoice the store does not know when `WEBHOOK_ADOPT_UNKNOWN` says so.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app import errors
from app.auth.principal import Caller
from app.cybersource.client import CybersourceClients
from app.cybersource.errors import CybersourceError, RejectedError
from app.events.repository import EventRepository, NewEvent
from app.events.types import EventType
from app.http.mutations import Mutation
from app.idempotency.executor import IdempotentExecutor, Outcome
from app.invoices.presenters import CONTENT_KEYS, invoice_out
from app.invoices.repository import InvoiceFields, InvoiceRepository
from app.invoices.service import invoice_not_found, known_profile
from app.invoices.upstream_state import UpstreamState
from app.kit.upstream_errors import call_problem
from app.settings import Settings
from app.upstream_sync.schemas import InvoiceAdopt

# Adoptions read Cybersource inside their key's transaction; this many at once per process.
CONCURRENT_ADOPTIONS = 4


class NotAdoptable(Exception):
    """Cybersource's answer lacks what the store needs (a status, an amount and its currency)."""


def _due_date(text: Any) -> date | None:
    if not isinstance(text, str):
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def adopted_fields(
    state: UpstreamState, *, reference: str | None, metadata: dict[str, str]
) -> InvoiceFields:
    """The store's columns for an invoice as Cybersource has it."""
    body = state.body
    if state.status is None or state.total_amount is None or not state.currency:
        raise NotAdoptable("Cybersource's answer has no status, total amount or currency")
    customer = body.get("customerInformation") or {}
    info = body.get("invoiceInformation") or {}
    content = {key: body[key] for key in CONTENT_KEYS if body.get(key) is not None}
    content["_facade"] = {"warnings": [], "adoptedAt": datetime.now(UTC).isoformat()}
    return InvoiceFields(
        currency=str(state.currency),
        total_amount=state.total_amount,
        customer_email=state.customer_email,
        customer_name=customer.get("name"),
        due_date=_due_date(info.get("dueDate")),
        content=content,
        merchant_customer_id=customer.get("merchantCustomerId"),
        external_reference=reference,
        metadata=metadata,
    )


async def adopt_into_store(
    conn: AsyncConnection,
    *,
    profile: str,
    number: str,
    owner: str,
    state: UpstreamState,
    adopted_by: str,
    reference: str | None = None,
    metadata: dict[str, str] | None = None,
) -> int | None:
    """Store an invoice read from Cybersource, with its `invoice.adopted` event; None when the store
    has that number already (nothing is written then)."""
    fields = adopted_fields(state, reference=reference, metadata=metadata or {})
    invoice_id = await InvoiceRepository(conn).insert_adopted(
        merchant_profile=profile,
        invoice_number=number,
        owner=owner,
        fields=fields,
        status=state.status,
        payment_link=state.payment_link,
        balance_amount=state.balance_amount,
        upstream=state.body,
    )
    if invoice_id is None:
        return None
    balance = state.balance_amount
    data = {
        "status": state.status,
        "balanceAmount": None if balance is None else str(balance),
        "adoptedBy": adopted_by,
        "observedAt": datetime.now(UTC).isoformat(),
    }
    await EventRepository(conn).insert([NewEvent(EventType.ADOPTED, invoice_id, None, data)])
    return invoice_id


async def read_for_adoption(
    clients: CybersourceClients, profile: str, number: str
) -> UpstreamState:
    """GET the invoice from Cybersource; a 404 there is a 404 here."""
    try:
        result = await clients.get(profile).get_invoice(number)
    except RejectedError as exc:
        if exc.status == 404 or exc.reason in ("NOT_FOUND", "NOTFOUND"):
            raise errors.InvoiceNotFound(
                f"Cybersource has no invoice {number!r} for merchant profile {profile!r}."
            ) from exc
        raise call_problem(exc, "read the invoice") from exc
    except CybersourceError as exc:
        raise call_problem(exc, "read the invoice") from exc
    return UpstreamState.from_body(result.raw)


class AdoptionService:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        clients: CybersourceClients,
        executor: IdempotentExecutor,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clients = clients
        self.executor = executor
        self._adoptions = asyncio.Semaphore(CONCURRENT_ADOPTIONS)

    async def adopt(
        self, caller: Caller, profile: str, number: str, body: InvoiceAdopt, request: Mutation
    ) -> tuple[Outcome, bool]:
        """`POST /v1/invoices/{number}/adopt`: read Cybersource, store under the chosen owner, 201.

        It runs inside its key's transaction (like a settings change): a failure before commit
        leaves no record, so the retry reads again; a finished adoption replays its 201.
        """
        profile = known_profile(self.settings, profile)
        owner = body.owner or caller.client

        async def adopt(conn: AsyncConnection) -> Outcome:
            invoices = InvoiceRepository(conn)
            if await invoices.get(profile, number) is not None:
                raise self._already_stored(number, profile)
            state = await read_for_adoption(self.clients, profile, number)
            try:
                invoice_id = await adopt_into_store(
                    conn,
                    profile=profile,
                    number=number,
                    owner=owner,
                    state=state,
                    adopted_by=caller.client,
                    reference=body.externalReference,
                    metadata=body.metadata,
                )
            except NotAdoptable as exc:
                raise errors.UpstreamRejected(f"Cannot adopt {number}: {exc}.") from exc
            if invoice_id is None:
                raise self._already_stored(number, profile)
            view = await invoices.get_view(profile, number)
            if view is None:  # just inserted in this transaction
                raise invoice_not_found(number, profile)
            answer = invoice_out(view, view.pending_ids).model_dump(mode="json")
            return Outcome(201, answer, {"Location": f"/v1/invoices/{number}"})

        async with self._adoptions:
            meaning = body.model_dump(mode="json", exclude_unset=True)
            return await self.executor.run_request(caller, request, meaning, adopt, scope=profile)

    @staticmethod
    def _already_stored(number: str, profile: str) -> errors.InvoiceAlreadyStored:
        return errors.InvoiceAlreadyStored(
            f"The facade already has invoice {number!r} for merchant profile {profile!r}; read it "
            "with GET /v1/invoices/{invoiceNumber}.",
        )
