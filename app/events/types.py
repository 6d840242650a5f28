"""Every event type of the feed (`GET /v1/events`), in one place: OpenAPI and the README list them
from here.

Each one stands for something that happened at Cybersource, never for a status that merely came
back: a payment under review that is rejected is `invoice.payment_rejected`, not a second
`invoice.sent` or `invoice.partially_paid`.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    CREATED = "invoice.created"
    UPDATED = "invoice.updated"
    PUBLISHED = "invoice.published"
    SENT = "invoice.sent"
    # Cybersource created the invoice but could not e-mail it (its 202 ACCEPTED); a send retries it.
    EMAIL_FAILED = "invoice.email_failed"
    # A reminder e-mail went out (Cybersource's `reminder`, or `overdue-reminder` with
    # overdue=true).
    REMINDER_SENT = "invoice.reminder_sent"
    # A payment waits for a decision (status PENDING); then it is paid, partially paid, or rejected.
    PAYMENT_PENDING = "invoice.payment_pending"
    PAYMENT_REJECTED = "invoice.payment_rejected"
    PARTIALLY_PAID = "invoice.partially_paid"
    PAID = "invoice.paid"
    CANCELED = "invoice.canceled"
    FAILED = "invoice.failed"
    # An invoice made outside the facade was taken into the store (adopt, import, or a webhook).
    ADOPTED = "invoice.adopted"
    # A push subscription stopped: its endpoint failed for the whole retry window, or its address is
    # no longer allowed (README "Receiving events"); about no invoice (invoiceNumber null).
    SUBSCRIPTION_DISABLED = "subscription.disabled"
