"""Keeping the store in step with Cybersource outside our own commands: refreshes, notifications,
and the recording the status reconciler shares with them.

A reading of Cybersource is taken without holding a database connection (a slow Cybersource must not
take the pool from reads), then recorded unless a newer reading landed meanwhile; then it is read
again, still holding nothing. No upstream call is ever made while an invoice's row is locked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app import errors
from app.auth.principal import Caller
from app.cybersource.client import CybersourceClients
from app.cybersource.errors import CybersourceError
from app.cybersource.notifications import (
    Notification,
    NotificationFieldInvalid,
    WebhookInvalid,
    read_notification,
    verify_signed,
)
from app.events.repository import EventRepository, NewEvent
from app.http.json_body import read_json
from app.invoices.commands import COMMAND_EVENTS
from app.invoices.presenters import invoice_out
from app.invoices.repository import InvoiceRepository, InvoiceRow
from app.invoices.schemas import InvoiceOut
from app.invoices.service import invoice_not_found, known_profile
from app.invoices.upstream_state import UpstreamState, status_event
from app.kit.flights import SingleFlight
from app.kit.rate_limits import RateLimit
from app.kit.upstream_errors import call_problem
from app.observability.logging import get_logger
from app.outbox.repository import OutboxRepository
from app.settings import Settings
from app.upstream_sync.adoption import NotAdoptable, adopt_into_store
from app.upstream_sync.notification_events import record_notification_event
from app.upstream_sync.repository import UpstreamSyncRepository

log = get_logger(__name__)
# A reading overtaken this many times in a row is dropped: what was recorded meanwhile is as new.
RECORD_ATTEMPTS = 3


async def record_upstream_state(
    conn: AsyncConnection, invoice: InvoiceRow, state: UpstreamState
) -> None:
    """Store what Cybersource reports outside our own commands (a refresh, a webhook), with its
    event."""
    await InvoiceRepository(conn).apply_upstream_state(
        invoice.id,
        status=state.status,
        payment_link=state.payment_link,
        balance_amount=state.balance_amount,
        upstream=state.body,
    )
    event = status_event(invoice.status, state.status, latest_history=state.latest_history_event)
    if event in COMMAND_EVENTS and await OutboxRepository(conn).has_unfinished(invoice.id):
        # Our own command is on its way and writes this event when the relay records it.
        event = None
    if event is not None:
        data = {
            "status": state.status,
            "previousStatus": invoice.status,
            "balanceAmount": None if state.balance_amount is None else str(state.balance_amount),
            "observedAt": datetime.now().astimezone().isoformat(),
        }
        await EventRepository(conn).insert([NewEvent(event, invoice.id, None, data)])


class UpstreamSyncService:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        reads: AsyncEngine,
        settings: Settings,
        clients: CybersourceClients,
    ) -> None:
        self.engine = engine
        self.reads = reads
        self.settings = settings
        self.clients = clients
        # Concurrent refreshes of one invoice (and replays of one notification) share one reading.
        self.refreshes: SingleFlight[None] = SingleFlight()
        self.notifications: SingleFlight[dict[str, str]] = SingleFlight()
        self.refresh_limit = RateLimit(settings.refresh_rate_limit, name="refreshes")
        self.webhook_limit = RateLimit(settings.webhook_rate_limit, name="notifications")

    async def read_upstream(self, profile: str, number: str) -> UpstreamState:
        """GET the invoice from Cybersource (no database connection is held meanwhile)."""
        try:
            result = await self.clients.get(profile).get_invoice(number)
        except CybersourceError as exc:
            raise call_problem(exc, "read the invoice") from exc
        return UpstreamState.from_body(result.raw)

    async def record_newest(
        self,
        profile: str,
        seen: InvoiceRow,
        state: UpstreamState,
        *,
        receipt: Callable[[AsyncConnection], Awaitable[bool]] | None = None,
    ) -> str:
        """Record `state`, read from Cybersource after `seen` was read from the store; the newest
        wins.

        The row is locked only to compare and write, never while Cybersource answers: when another
        reading was recorded since `seen` (a command's answer, a webhook, a refresh, the
        reconciler), ours may be the older one, so the transaction ends without a write, Cybersource
        is read again with no connection held, and that reading is tried the same way. After
        RECORD_ATTEMPTS overtakes in a row the reading is dropped. `receipt` runs in the recording
        transaction (a webhook's de-duplication); False from it means a duplicate, and nothing is
        written.

        Returns "recorded", "overtaken" or "duplicate".
        """
        for _ in range(RECORD_ATTEMPTS):
            async with self.engine.begin() as conn:
                invoice = await InvoiceRepository(conn).get_by_id(seen.id, for_update=True)
                assert invoice is not None  # invoices are never deleted
                if invoice.checked_at == seen.checked_at:
                    if receipt is not None and not await receipt(conn):
                        return "duplicate"
                    await record_upstream_state(conn, invoice, state)
                    return "recorded"
            seen = invoice
            state = await self.read_upstream(profile, invoice.invoice_number)
        if receipt is not None:
            async with self.engine.begin() as conn:
                if not await receipt(conn):
                    return "duplicate"
        return "overtaken"

    async def refreshed_invoice(self, caller: Caller, profile: str, number: str) -> InvoiceOut:
        """`GET /v1/invoices/{n}?refresh=true`: read Cybersource first (history, balance), record
        it, answer."""
        profile = known_profile(self.settings, profile)
        self.refresh_limit.hit(caller.client)
        async with self.reads.connect() as conn:
            seen = await InvoiceRepository(conn).get(profile, number)
        if seen is None or not caller.may_see(seen.owner, seen.merchant_profile):
            raise invoice_not_found(number, profile)
        if seen.status is not None:  # else our create has not reached Cybersource yet
            # One reading and one write for every refresh of this invoice in flight; the waiters
            # hold no database connection (only the one flight's transaction takes one, briefly).
            await self.refreshes.run((profile, number), lambda: self._refresh(profile, seen))
        async with self.reads.connect() as conn:
            view = await InvoiceRepository(conn).get_view(profile, number)
        assert view is not None
        return invoice_out(view, view.pending_ids)

    async def _refresh(self, profile: str, seen: InvoiceRow) -> None:
        state = await self.read_upstream(profile, seen.invoice_number)
        await self.record_newest(profile, seen, state)

    def _merchant_profile(self, notification: Notification) -> str:
        """The configured profile of the notification's merchant; refused when there is none."""
        organization = notification.organization_id
        for name, profile in self.settings.merchant_profiles.items():
            if organization is not None and profile.merchant_id == organization:
                return name
        log.warning("webhook.unknown_merchant", organization_id=organization)
        raise errors.Forbidden("The notification is for a merchant this facade does not serve.")

    async def receive_notification(self, raw: bytes, signature: str | None) -> dict[str, str]:
        """A Cybersource notification: a hint to re-read the invoice, acknowledged once that is
        committed.

        A failure makes Cybersource retry; a redelivery of an accepted notification changes nothing.
        Once the header checks out, the body is read by the one JSON reader (size and depth limits
        before parsing: 413, 400 malformed_json); a signed field of the wrong JSON type is a 422.
        """
        parse = partial(read_json, max_bytes=self.settings.webhook_max_body_bytes)
        try:
            signed = verify_signed(raw, signature, self.settings.webhook_keys, parse=parse)
            notification = read_notification(signed.body, signed.content)
        except WebhookInvalid as exc:
            log.warning("webhook.refused", reason=str(exc))
            raise errors.Unauthenticated(f"The notification was refused: {exc}.") from exc
        except NotificationFieldInvalid as exc:
            log.warning("webhook.unusable", field=exc.field, reason=exc.message)
            raise errors.ValidationFailed(
                f"The notification cannot be used: {exc}.",
                errors=[{"field": exc.field, "message": exc.message}],
            ) from exc
        if notification.is_test or not notification.invoice_number:
            return {"status": "accepted", "action": "none"}
        profile = self._merchant_profile(notification)
        # Replays of one notification at once share one reading (their signed content is the key).
        return await self.notifications.run(
            notification.dedup_key, lambda: self._apply_notification(notification, profile)
        )

    async def _adopt(
        self,
        conn: AsyncConnection,
        profile: str,
        number: str,
        state: UpstreamState,
        notification: Notification,
    ) -> dict[str, str]:
        """A notification about an invoice made outside the facade: adopt it under ADOPT_OWNER."""
        try:
            adopted = await adopt_into_store(
                conn,
                profile=profile,
                number=number,
                owner=self.settings.adopt_owner,
                state=state,
                adopted_by="webhook",
            )
        except NotAdoptable as exc:
            log.warning("webhook.not_adoptable", invoice_number=number, reason=str(exc))
            return {"status": "accepted", "action": "unknown invoice"}
        if adopted is None:  # adopted meanwhile through another door: nothing left to do
            return {"status": "accepted", "action": "none"}
        await record_notification_event(conn, notification, adopted, state)
        log.info("webhook.adopted", invoice_number=number, owner=self.settings.adopt_owner)
        return {"status": "accepted", "action": "adopted"}

    async def _apply_notification(self, notification: Notification, profile: str) -> dict[str, str]:
        number = notification.invoice_number
        assert number is not None
        async with self.reads.connect() as conn:
            if await UpstreamSyncRepository(conn).webhook_receipt_exists(notification.dedup_key):
                return {"status": "duplicate", "action": "none"}
            seen = await InvoiceRepository(conn).get(profile, number)
        if seen is not None and seen.status is None:
            # Our create is still being recorded: let Cybersource redeliver once it is, so events
            # stay in order.
            raise errors.ServiceUnavailable(
                "The invoice's create is still being recorded; deliver again later.",
                headers={"Retry-After": "5"},
            )
        # An invoice the store does not know is adopted when WEBHOOK_ADOPT_UNKNOWN says so.
        adopt = seen is None and self.settings.webhook_adopt_unknown
        if seen is not None or adopt:
            self.webhook_limit.hit(profile, number)
        try:
            # Read before taking a connection: a slow Cybersource must not hold the pool.
            wanted = seen is not None or adopt
            state = await self.read_upstream(profile, number) if wanted else None

            async def receipt(conn: AsyncConnection) -> bool:
                # Recorded with the new state, in one transaction: a failure leaves no receipt, so
                # Cybersource's retry is processed; a redelivery racing this one finds the receipt
                # and changes nothing. What de-duplication needs, and no more: no body (it carries
                # the payer's name and e-mail); purged after WEBHOOK_RECEIPT_RETENTION_HOURS.
                recorded = await UpstreamSyncRepository(conn).record_webhook_receipt(
                    dedup_key=notification.dedup_key,
                    event_type=notification.event_type,
                    invoice_number=number,
                    merchant_profile=profile,
                )
                if recorded and seen is not None:
                    # What the notification itself says (a reminder changes no status): once, with
                    # its receipt.
                    await record_notification_event(conn, notification, seen.id, state)
                return recorded

            if seen is None and state is not None:
                async with self.engine.begin() as conn:
                    if not await receipt(conn):
                        return {"status": "duplicate", "action": "none"}
                    return await self._adopt(conn, profile, number, state, notification)
            if seen is None or state is None:
                async with self.engine.begin() as conn:
                    if not await receipt(conn):
                        return {"status": "duplicate", "action": "none"}
                log.info("webhook.unknown_invoice", invoice_number=number)
                return {"status": "accepted", "action": "unknown invoice"}
            if await self.record_newest(profile, seen, state, receipt=receipt) == "duplicate":
                return {"status": "duplicate", "action": "none"}
        except (errors.UpstreamUnavailable, errors.UpstreamRejected) as exc:
            raise errors.ServiceUnavailable(
                "Cybersource could not confirm the invoice; retry later.",
                headers={"Retry-After": "30"},
            ) from exc
        log.info("webhook.applied", event_type=notification.event_type, invoice_number=number)
        return {"status": "accepted", "action": "refreshed"}
