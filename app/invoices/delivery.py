"""Delivering invoice commands to Cybersource: the outbox relay's handler for invoices.

Ambiguous failures (the call may have been applied) are reconciled before anything is re-sent: a
create is looked up by its number, a send/publish/cancel compares the upstream status and e-mail
history with what it was before the first attempt. Until such a reading has answered, the command's
outcome is unknown: a failing reading is retried (class `reconcile`, no limit of its own) and never
counted against the command's other classes. Every upstream call is fenced on the lease first. The
dispatch is exhaustive over `OperationKind`: mypy refuses a kind without its upstream call or its
reconcile rule.

Failure classes (each counts its own attempts): `transient` (5xx, 429, not sent), `account` (502
"General system failure", `RELAY_ACCOUNT_ERROR_ATTEMPTS`), `authentication` (401/403, the same
limit), `ambiguous` (the answer was lost after sending), `reconcile` (the reading that decides did
not answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, assert_never

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.cybersource.client import CybersourceClient, CybersourceClients
from app.cybersource.errors import (
    AmbiguousError,
    AuthenticationError,
    CybersourceError,
    RejectedError,
    TransientError,
)
from app.events.repository import EventRepository, NewEvent
from app.events.types import EventType
from app.invoices.commands import COMMANDS, OperationKind, ReconcileRule
from app.invoices.repository import DeliveredState, InvoiceRepository
from app.invoices.upstream_state import UpstreamState
from app.kit.upstream_errors import error_record
from app.observability import tracing
from app.observability.logging import get_logger
from app.outbox.lease import Lease
from app.outbox.relay import Delivery, Done, Failed, Limits, Relay, Succeeded, Superseded, TryAgain
from app.outbox.repository import OUTBOX_CHANNEL, ClaimedOperation, OutboxRepository
from app.outbox.retry import RetryPolicy
from app.settings import Settings

log = get_logger(__name__)
SUPERSEDED_MESSAGE = (
    "the invoice was canceled before this command reached Cybersource; nothing was done"
)


# Cybersource's 202 ACCEPTED message travels with the invoice read back after it, under this key.
ACCEPTED_MESSAGE = "_facadeAcceptedMessage"
EMAIL_NOT_SENT = "Cybersource created the invoice but did not e-mail it; send it separately."


@dataclass(frozen=True, slots=True)
class InvoiceEffects:
    """What a finished command writes besides its own row: the invoice's columns and its events."""

    state: DeliveredState
    event: NewEvent | None
    more_events: tuple[NewEvent, ...] = ()


class OutcomeUnread(Exception):
    """The reading that decides whether a command was applied did not answer: it stays unknown."""

    def __init__(self, cause: CybersourceError) -> None:
        super().__init__(cause.message)
        self.cause = cause


InvoiceRelay = Relay[ClaimedOperation, "InvoiceEffects"]


def invoice_command_relay(
    engine: AsyncEngine,
    settings: Settings,
    handler: CybersourceDelivery,
    *,
    owner: str | None = None,
    listen_dsn: str | None = None,
) -> InvoiceRelay:
    """The relay of invoice commands: the outbox table as its queue, Cybersource delivery as its
    handler."""
    return Relay(
        engine,
        OutboxRepository,
        handler,
        retry=RetryPolicy.from_settings(settings),
        limits=Limits.from_settings(settings),
        channel=OUTBOX_CHANNEL,
        owner=owner,
        listen_dsn=listen_dsn,
    )


class CybersourceDelivery:
    def __init__(
        self, engine: AsyncEngine, settings: Settings, clients: CybersourceClients
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clients = clients

    # --- the handler protocol ---------------------------------------------------------------------

    async def deliver(self, operation: ClaimedOperation, lease: Lease) -> Delivery[InvoiceEffects]:
        # The trace of the request that queued the command goes on here (and on to Cybersource).
        with tracing.continued(
            operation.traceparent,
            f"outbox.deliver {operation.kind}",
            invoice_number=operation.invoice_number,
        ):
            return await self._deliver(operation, lease)

    async def _deliver(self, operation: ClaimedOperation, lease: Lease) -> Delivery[InvoiceEffects]:
        account_limit = self.settings.relay_account_error_attempts
        client = self.clients.get(operation.merchant_profile)
        try:
            body = await self._deliver_once(client, operation, lease)
        except OutcomeUnread as exc:
            retry_after = exc.cause.retry_after if isinstance(exc.cause, TransientError) else None
            return self._again(exc.cause, "reconcile", retry_after=retry_after, reconcile=True)
        except RejectedError as exc:
            if await self._canceled_first(client, operation, lease, exc):
                error = {**error_record(exc, "superseded"), "message": SUPERSEDED_MESSAGE}
                return Superseded(error, self._superseded_effects(operation))
            error = error_record(exc, "rejected")
            return Failed(error, self.failure_effects(operation, error))
        except AuthenticationError as exc:
            return self._again(exc, "authentication", attempt_limit=account_limit, reconcile=False)
        except AmbiguousError as exc:
            return self._again(exc, "ambiguous", reconcile=True)
        except TransientError as exc:
            # 502 "General system failure" is often an account problem: a few of its own, not
            # forever.
            if getattr(exc, "possibly_account_problem", False):
                cls, limit = "account", account_limit
            else:
                cls, limit = "transient", None
            return self._again(
                exc, cls, attempt_limit=limit, retry_after=exc.retry_after, reconcile=False
            )
        except CybersourceError as exc:
            return self._again(exc, "transient", reconcile=False)
        return self._succeeded(operation, body)

    def failure_effects(self, operation: ClaimedOperation, error: dict[str, Any]) -> InvoiceEffects:
        state = DeliveredState(operation.invoice_id, False, None, None, None, None, error)
        if error.get("kind") == "unknown":
            # Perhaps applied: not `invoice.failed`; operators see it (state unknown) and decide.
            return InvoiceEffects(state, None)
        data = {"operation": operation.kind, "error": error}
        return InvoiceEffects(
            state, NewEvent(EventType.FAILED, operation.invoice_id, operation.id, data)
        )

    @staticmethod
    def _superseded_effects(operation: ClaimedOperation) -> InvoiceEffects:
        # The store already follows the cancel (ours, or a webhook's): nothing to change but the
        # sync.
        state = DeliveredState(operation.invoice_id, True, None, None, None, None, None)
        return InvoiceEffects(state, None)

    async def record(
        self, conn: AsyncConnection, done: Sequence[Done[ClaimedOperation, InvoiceEffects]]
    ) -> None:
        await InvoiceRepository(conn).apply_delivered([d.effects.state for d in done])
        events = [
            event
            for d in done
            for event in (d.effects.event, *d.effects.more_events)
            if event is not None
        ]
        if events:
            await EventRepository(conn).insert(events)

    # --- delivering one command -------------------------------------------------------------------

    @staticmethod
    def _again(
        exc: CybersourceError,
        failure_class: str,
        *,
        attempt_limit: int | None = None,
        retry_after: float | None = None,
        reconcile: bool | None = None,
    ) -> TryAgain:
        return TryAgain(
            error_record(exc, failure_class),
            failure_class,
            attempt_limit=attempt_limit,
            retry_after=retry_after,
            reconcile=reconcile,
            message=exc.message,
        )

    def _succeeded(
        self, operation: ClaimedOperation, body: dict[str, Any]
    ) -> Succeeded[InvoiceEffects]:
        kind = OperationKind(operation.kind)
        accepted_message = body.pop(ACCEPTED_MESSAGE, None)
        state = UpstreamState.from_body(body)
        now = datetime.now(UTC).isoformat()
        result: dict[str, Any] = {"status": state.status, "completedAt": now}
        email_failure = None
        if (
            kind is OperationKind.CREATE
            and asks_for_email(operation.payload)
            and not state.email_sent
        ):
            # Cybersource's 202 ACCEPTED (or a create read back unsent): the invoice exists, its
            # e-mail did not go out. The command succeeded; the invoice and an event say so; a send
            # retries it.
            email_failure = {"message": str(accepted_message or EMAIL_NOT_SENT), "failedAt": now}
            result["emailFailure"] = email_failure
        delivered = DeliveredState(
            operation.invoice_id,
            True,
            state.status,
            state.payment_link,
            state.balance_amount,
            body,
            None,
            email_failure=email_failure,
            email_sent=kind is OperationKind.SEND and state.email_sent,
        )
        data = {"status": state.status, "operation": operation.kind}
        event = NewEvent(COMMANDS[kind].event, operation.invoice_id, operation.id, data)
        more: tuple[NewEvent, ...] = ()
        if email_failure is not None:
            failed = {"status": state.status, "operation": operation.kind, **email_failure}
            more = (NewEvent(EventType.EMAIL_FAILED, operation.invoice_id, operation.id, failed),)
        return Succeeded(result, InvoiceEffects(delivered, event, more))

    async def _deliver_once(
        self, client: CybersourceClient, operation: ClaimedOperation, lease: Lease
    ) -> dict[str, Any]:
        kind = OperationKind(operation.kind)
        if operation.needs_reconcile:
            applied = await self._reconcile(client, operation, lease)
            if applied is not None:
                log.info("relay.reconciled_as_applied", operation_id=str(operation.id), kind=kind)
                return applied
        if COMMANDS[kind].needs_baseline and operation.baseline is None:
            await self._record_baseline(client, operation, lease)
        await lease.fence()
        try:
            return await self._call(client, operation, kind)
        except RejectedError as exc:
            if kind is OperationKind.CREATE and exc.is_duplicate_record:
                # A create we sent before (answer lost) or someone else's invoice: look before
                # failing.
                existing = await self._deciding_read(client, operation, lease)
                payload = operation.payload or {}
                if existing is not None and UpstreamState.from_body(existing).matches_request(
                    payload
                ):
                    return existing
            raise

    async def _call(
        self, client: CybersourceClient, operation: ClaimedOperation, kind: OperationKind
    ) -> dict[str, Any]:
        number = operation.invoice_number
        match kind:
            case OperationKind.CREATE:
                result = await client.create_invoice(operation.payload or {})
                if result.accepted_without_email:
                    return await self._read_back_accepted(client, number, result.message)
            case OperationKind.UPDATE:
                result = await client.update_invoice(number, operation.payload or {})
            case OperationKind.PUBLISH:
                result = await client.publish_invoice(number)
            case OperationKind.SEND:
                result = await client.send_invoice(number)
            case OperationKind.CANCEL:
                result = await client.cancel_invoice(number)
            case _:
                assert_never(kind)
        return dict(result.raw)

    async def _read_back_accepted(
        self, client: CybersourceClient, number: str, message: str | None
    ) -> dict[str, Any]:
        """After 202 ACCEPTED (no invoice in the answer, "ACCEPTED" is no status): read the invoice.

        A failed read is retried like any transient failure; the retry's create meets
        DUPLICATE_RECORD, reads the invoice and finds it ours, so the outcome is the same.
        """
        body = await self._fetch(client, number)
        if body is None:
            raise AmbiguousError(
                f"Cybersource accepted the create of {number} (202) but does not show the invoice "
                "yet"
            )
        return {**body, ACCEPTED_MESSAGE: message}

    async def _fetch(self, client: CybersourceClient, number: str) -> dict[str, Any] | None:
        try:
            return dict((await client.get_invoice(number)).raw)
        except RejectedError as exc:
            if exc.is_not_found:
                return None
            raise

    async def _deciding_read(
        self, client: CybersourceClient, operation: ClaimedOperation, lease: Lease
    ) -> dict[str, Any] | None:
        """A read that decides whether the command was applied: until it answers, nothing is
        known."""
        await lease.fence()
        try:
            return await self._fetch(client, operation.invoice_number)
        except CybersourceError as exc:
            raise OutcomeUnread(exc) from exc

    async def _record_baseline(
        self, client: CybersourceClient, operation: ClaimedOperation, lease: Lease
    ) -> None:
        """Before the first send, note status and e-mail count so a lost answer can be told
        apart."""
        await lease.fence()
        state = UpstreamState.from_body(await self._fetch(client, operation.invoice_number))
        baseline = {"status": state.status, "sends": state.send_count}
        async with self.engine.begin() as conn:
            await OutboxRepository(conn).set_baseline(operation.id, lease.owner, baseline)

    async def _reconcile(
        self, client: CybersourceClient, operation: ClaimedOperation, lease: Lease
    ) -> dict[str, Any] | None:
        """After an ambiguous failure: the upstream invoice if the command was applied, else
        None."""
        rule = COMMANDS[OperationKind(operation.kind)].reconcile
        if rule is ReconcileRule.REAPPLY:
            return None  # a full replacement is safe to apply again
        current = await self._deciding_read(client, operation, lease)
        if current is None:
            return None
        return current if applied(rule, UpstreamState.from_body(current), operation) else None

    async def _canceled_first(
        self,
        client: CybersourceClient,
        operation: ClaimedOperation,
        lease: Lease,
        refusal: RejectedError,
    ) -> bool:
        """Was the command refused because the invoice had been canceled (a race lost to a
        cancel)?"""
        if not refusal.is_action_not_allowed or operation.kind == OperationKind.CANCEL:
            return False
        await lease.fence()
        try:
            current = await self._fetch(client, operation.invoice_number)
        except CybersourceError:
            return False  # the refusal stands as it was answered
        return current is not None and UpstreamState.from_body(current).status == "CANCELED"


def asks_for_email(payload: dict[str, Any] | None) -> bool:
    """Does this create body ask Cybersource to e-mail the invoice now?"""
    info = (payload or {}).get("invoiceInformation") or {}
    mode = str(info.get("deliveryMode") or "email").lower()
    return info.get("sendImmediately") is True and mode == "email"


def applied(rule: ReconcileRule, state: UpstreamState, operation: ClaimedOperation) -> bool:
    """Does the upstream invoice show the command as applied?"""
    match rule:
        case ReconcileRule.MATCHES_REQUEST:
            return state.matches_request(operation.payload or {})
        case ReconcileRule.REAPPLY:
            return False
        case ReconcileRule.LEFT_DRAFT:
            return state.status not in (None, "DRAFT")
        case ReconcileRule.IS_CANCELED:
            return state.status == "CANCELED"
        case ReconcileRule.SENT_SINCE_BASELINE:
            baseline = operation.baseline
            if baseline is None:
                # the baseline is committed before the first send call: none means never sent
                return False
            moved = state.status != baseline.get("status")
            return moved or state.send_count > int(baseline.get("sends", 0))
        case _:
            assert_never(rule)
