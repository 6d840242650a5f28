"""Events a Cybersource notification stands for by itself, whatever the invoice's status.

Most notifications are a hint: the invoice is read again and a change of status is its event
(`upstream_state.status_event`). A reminder e-mail changes no status, so only the notification's
event type says it happened: `invoicing.customer.invoice.reminder` and `.overdue-reminder` are
`invoice.reminder_sent` (`overdue` false or true). It is written in the transaction that records the
notification's receipt, so once per notification: a redelivery or a replay of the signed content
writes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from app.cybersource.notifications import Notification
from app.events.repository import EventRepository, NewEvent
from app.events.types import EventType
from app.invoices.upstream_state import UpstreamState

# Cybersource's reminder event types, and whether the reminder is the overdue one.
REMINDERS = {
    "invoicing.customer.invoice.reminder": False,
    "invoicing.customer.invoice.overdue-reminder": True,
}


async def record_notification_event(
    conn: AsyncConnection, notification: Notification, invoice_id: int, state: UpstreamState | None
) -> None:
    """Write the event the notification itself stands for, if any (a reminder)."""
    overdue = REMINDERS.get(notification.event_type.strip().lower())
    if overdue is None:
        return
    balance = None if state is None else state.balance_amount
    data = {
        "overdue": overdue,
        "eventType": notification.event_type,
        "status": None if state is None else state.status,
        "balanceAmount": None if balance is None else str(balance),
        "observedAt": datetime.now(UTC).isoformat(),
    }
    await EventRepository(conn).insert([NewEvent(EventType.REMINDER_SENT, invoice_id, None, data)])
