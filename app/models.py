"""ORM tables: invoices, invoice-number counters, idempotency records, outbox operations, events.

Timestamps are `timestamptz`; relationships are not used (every query is explicit in the
repository).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    Sequence,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.invoices import commands

# Default allocation: a sequence never serialises concurrent creates (a counter row would).
INVOICE_NUMBER_SEQUENCE = Sequence("invoice_number_seq", start=1, metadata=Base.metadata)

SYNC_STATES = ("pending", "in_sync", "failed", "unknown")
# Statuses a payer can still move without a command of ours (README's lifecycle: payments, a pending
# review).
RECONCILED_STATUSES = tuple(status.value for status in commands.RECONCILED_STATUSES)
OPERATION_KINDS = tuple(kind.value for kind in commands.OperationKind)
# unknown: given up while no reading could tell whether it was applied (operators re-drive it: it
# reads first); superseded: refused because a cancel reached the invoice first (nothing to
# re-drive).
OPERATION_STATES = ("pending", "in_flight", "succeeded", "failed", "unknown", "superseded")


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("merchant_profile", "invoice_number"),
        CheckConstraint(f"sync_state IN {SYNC_STATES}", name="sync_state"),
        Index("ix_invoices_owner_created", "owner", "created_at"),
        Index("ix_invoices_status_created", "status", "created_at"),
        # Receivables (migration 0006): one index per filter and sort, led by the merchant profile.
        Index(
            "uq_invoices_external_reference",
            "merchant_profile",
            "owner",
            "external_reference",
            unique=True,
            postgresql_where=text("external_reference IS NOT NULL"),
        ),
        Index("ix_invoices_profile_created", "merchant_profile", "created_at", "id"),
        Index("ix_invoices_profile_status", "merchant_profile", "status", "created_at", "id"),
        Index("ix_invoices_profile_due", "merchant_profile", "due_date", "id"),
        Index("ix_invoices_profile_amount", "merchant_profile", "total_amount", "id"),
        Index(
            "ix_invoices_profile_overdue",
            "merchant_profile",
            "due_date",
            "id",
            postgresql_where=text(f"status IN {RECONCILED_STATUSES}"),
        ),
        Index(
            "ix_invoices_profile_customer_id",
            "merchant_profile",
            "merchant_customer_id",
            postgresql_where=text("merchant_customer_id IS NOT NULL"),
        ),
        Index("ix_invoices_profile_email", "merchant_profile", text("lower(customer_email)")),
        Index(
            "ix_invoices_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
        # The status reconciler's queue: only invoices a payer can still change, oldest check first.
        Index(
            "ix_invoices_open_checked",
            "checked_at",
            postgresql_where=text(f"status IN {RECONCILED_STATUSES}"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    merchant_profile: Mapped[str] = mapped_column(Text)
    invoice_number: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text)
    # Cybersource's status (DRAFT, CREATED, SENT, PARTIAL, PAID, CANCELED, PENDING); NULL until
    # created.
    status: Mapped[str | None] = mapped_column(Text)
    sync_state: Mapped[str] = mapped_column(Text, server_default="pending")
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    payment_link: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(Text)
    total_amount: Mapped[Decimal] = mapped_column(Numeric(19, 4))
    balance_amount: Mapped[Decimal | None] = mapped_column(Numeric(19, 4))
    customer_email: Mapped[str | None] = mapped_column(Text)
    customer_name: Mapped[str | None] = mapped_column(Text)
    due_date: Mapped[date | None] = mapped_column(Date)
    merchant_customer_id: Mapped[str | None] = mapped_column(Text)
    # The caller's own reference and metadata (README "References and metadata"): never sent
    # upstream.
    external_reference: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, str]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )
    # What the caller asked for (Cybersource field names), and the last body Cybersource answered
    # with.
    content: Mapped[dict[str, Any]] = mapped_column(JSONB)
    upstream: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # When Cybersource's state of the invoice was last seen (a command's answer, a refresh, a
    # webhook, the reconciler): the reconciler re-reads open invoices not seen for a while, in case
    # a webhook was lost.
    checked_at: Mapped[datetime] = _now()


class InvoiceImport(Base):
    """Where `invoicing-gateway invoices import` stands: a stopped import resumes from
    `next_offset`."""

    __tablename__ = "invoice_imports"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    merchant_profile: Mapped[str] = mapped_column(Text)
    status_filter: Mapped[str | None] = mapped_column(Text)
    since: Mapped[date | None] = mapped_column(Date)
    owner: Mapped[str] = mapped_column(Text)
    next_offset: Mapped[int] = mapped_column(Integer, server_default="0")
    total: Mapped[int | None] = mapped_column(Integer)
    adopted: Mapped[int] = mapped_column(Integer, server_default="0")
    already_known: Mapped[int] = mapped_column(Integer, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, server_default="0")
    started_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class InvoiceNumberCounter(Base):
    """Opt-in gap-free numbering: one row per merchant profile, updated in every create
    transaction."""

    __tablename__ = "invoice_number_counters"

    merchant_profile: Mapped[str] = mapped_column(Text, primary_key=True)
    last_value: Mapped[int] = mapped_column(BigInteger, server_default="0")


class Operation(Base):
    """An outbox command: one upstream call the relay must deliver exactly once."""

    __tablename__ = "operations"
    __table_args__ = (
        CheckConstraint(f"kind IN {OPERATION_KINDS}", name="kind"),
        CheckConstraint(f"state IN {OPERATION_STATES}", name="state"),
        # The relay's claim scans only unfinished commands, due first.
        Index(
            "ix_operations_due",
            "available_at",
            postgresql_where=text("state IN ('pending', 'in_flight')"),
        ),
        Index("ix_operations_invoice_seq", "invoice_id", "seq"),
        Index("ix_operations_failed", "created_at", postgresql_where=text("state = 'failed'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    merchant_profile: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    requested_by: Mapped[str] = mapped_column(Text)
    # The W3C traceparent of the request that queued it: the relay continues that trace.
    traceparent: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    available_at: Mapped[datetime] = _now()
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set after an ambiguous failure: the next attempt first checks whether the call was applied.
    needs_reconcile: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # Attempts per failure class ({"account": 2}): a class with a limit of its own counts only its
    # failures.
    failure_counts: Mapped[dict[str, int]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )
    # What the invoice looked like upstream before the first attempt (for reconciling sends).
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (
        CheckConstraint("state IN ('processing', 'completed')", name="state"),
        Index("ix_idempotency_records_created_at", "created_at"),
    )

    client: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, server_default="processing")
    # A request that dies without an operation loses its claim when this passes.
    locked_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    operation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    response_body: Mapped[Any | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """An invoice lifecycle event. `txid` lets readers page in commit order without skipping
    rows."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_txid_id", "txid", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    txid: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("(pg_current_xact_id()::text)::bigint")
    )
    type: Mapped[str] = mapped_column(Text)
    # NULL for an event that is about no invoice (subscription.disabled).
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    invoice_number: Mapped[str | None] = mapped_column(Text)
    merchant_profile: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text)
    operation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()


class WebhookReceipt(Base):
    """Cybersource webhook notifications already accepted, so a redelivery changes nothing.

    Keyed by the digest of the signed content; no body is kept (it carries the payer's name and
    e-mail), and receipts are purged after WEBHOOK_RECEIPT_RETENTION_HOURS.
    """

    __tablename__ = "webhook_receipts"
    __table_args__ = (Index("ix_webhook_receipts_received_at", "received_at"),)

    dedup_key: Mapped[str] = mapped_column(Text, primary_key=True)
    event_type: Mapped[str] = mapped_column(Text)
    invoice_number: Mapped[str | None] = mapped_column(Text)
    merchant_profile: Mapped[str] = mapped_column(Text, server_default="default")
    received_at: Mapped[datetime] = _now()


DELIVERY_KINDS = ("event", "ping")


class Subscription(Base):
    """A push subscription: where the events a caller may read are POSTed (Standard Webhooks)."""

    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_owner_seq", "owner", "seq"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    # What the creator may read through the feed, taken at creation: its own invoices unless it was
    # an admin, and only its merchant profiles.
    owner: Mapped[str] = mapped_column(Text)
    sees_all_owners: Mapped[bool] = mapped_column(Boolean, server_default="false")
    profiles: Mapped[list[str]] = mapped_column(ARRAY(Text))
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    secret: Mapped[str] = mapped_column(Text)
    # During a rotation's grace period the previous secret signs alongside the current one.
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class SubscriptionDelivery(Base):
    """One event (or ping) to POST to one subscription: the push relay's queue, in the feed's
    order."""

    __tablename__ = "subscription_deliveries"
    __table_args__ = (
        CheckConstraint(f"kind IN {DELIVERY_KINDS}", name="kind"),
        CheckConstraint("state IN ('pending', 'in_flight', 'succeeded', 'failed')", name="state"),
        Index(
            "ix_subscription_deliveries_due",
            "available_at",
            postgresql_where=text("state IN ('pending', 'in_flight')"),
        ),
        Index("ix_subscription_deliveries_order", "subscription_id", "txid", "seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    # The writing transaction, as for events: deliveries go out in the feed's (txid, id) order.
    txid: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("(pg_current_xact_id()::text)::bigint")
    )
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(Text)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # a ping's body
    state: Mapped[str] = mapped_column(Text, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    available_at: Mapped[datetime] = _now()
    # The retry window runs from the first attempt (a delivery may wait behind an older one).
    first_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Every attempt (the last 50): time, status code, latency, error, a prefix of the answer.
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
