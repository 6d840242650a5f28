"""Every event type of the feed (`GET /v1/events`), in one place: OpenAPI lists them from here."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    CREATED = "invoice.created"
    UPDATED = "invoice.updated"
    PUBLISHED = "invoice.published"
    SENT = "invoice.sent"
    PARTIALLY_PAID = "invoice.partially_paid"
    PAID = "invoice.paid"
    CANCELED = "invoice.canceled"
    FAILED = "invoice.failed"
