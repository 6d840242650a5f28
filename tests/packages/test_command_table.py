"""The one table of commands (app/invoices/commands.py): every kind has a complete entry, and what
the table says matches the event types, the statuses and the database's constraint."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from app import models
from app.events.types import EventType
from app.invoices.commands import (
    COMMAND_EVENTS,
    COMMANDS,
    RECONCILED_STATUSES,
    InvoiceStatus,
    OperationKind,
    ReconcileRule,
    command,
)
from app.invoices.upstream_state import STATUS_EVENTS
from app.outbox.repository import OutboxRepository
from tests.packages import seed


def test_every_kind_has_its_entry() -> None:
    assert set(COMMANDS) == set(OperationKind)
    for kind in OperationKind:
        entry = command(kind)
        assert entry == COMMANDS[kind]
        assert entry.kind is kind
        assert isinstance(entry.reconcile, ReconcileRule)


def test_every_command_event_is_an_event_type_of_the_feed() -> None:
    for kind, entry in COMMANDS.items():
        assert isinstance(entry.event, EventType), kind
        assert EventType(entry.event.value) is entry.event
    assert {entry.event for entry in COMMANDS.values()} == COMMAND_EVENTS
    # Each kind writes its own event, so the feed tells the commands apart.
    assert len(COMMAND_EVENTS) == len(COMMANDS)
    assert EventType.FAILED not in COMMAND_EVENTS  # a failure is its own event, never a success's


def test_status_events_are_event_types_of_known_statuses() -> None:
    for status, event in STATUS_EVENTS.items():
        assert InvoiceStatus(status).value == status
        assert isinstance(event, EventType)


def test_only_the_create_has_no_source_status() -> None:
    create = COMMANDS[OperationKind.CREATE]
    assert create.allowed_from is None and create.success_status == 201
    assert create.event is EventType.CREATED
    for kind, entry in COMMANDS.items():
        if kind is OperationKind.CREATE:
            continue
        assert entry.allowed_from, kind  # an action is allowed from some status
        assert entry.allowed_from <= set(InvoiceStatus)
        assert entry.success_status == 200
        # Nothing moves a paid or canceled invoice.
        assert not entry.allowed_from & {InvoiceStatus.PAID, InvoiceStatus.CANCELED}, kind


def test_a_rule_that_compares_with_a_baseline_gets_one() -> None:
    for kind, entry in COMMANDS.items():
        if entry.reconcile is ReconcileRule.SENT_SINCE_BASELINE:
            assert entry.needs_baseline, kind


def test_the_reconciled_statuses_are_the_open_ones() -> None:
    assert set(RECONCILED_STATUSES) <= set(InvoiceStatus)
    assert not set(RECONCILED_STATUSES) & {
        InvoiceStatus.DRAFT,
        InvoiceStatus.PAID,
        InvoiceStatus.CANCELED,
    }
    assert tuple(s.value for s in RECONCILED_STATUSES) == models.RECONCILED_STATUSES


def test_the_model_lists_every_kind() -> None:
    assert set(models.OPERATION_KINDS) == {kind.value for kind in OperationKind}


@pytest.mark.parametrize("kind", list(OperationKind), ids=str)
async def test_the_database_accepts_every_kind(conn: AsyncConnection, kind: OperationKind) -> None:
    # The migrated `operations.kind` CHECK constraint: a kind added without its migration fails
    # here.
    invoice_id = await seed.invoice(conn)
    operation_id = uuid.uuid4()
    await OutboxRepository(conn).insert(
        operation_id=operation_id,
        invoice_id=invoice_id,
        merchant_profile="default",
        kind=kind,
        payload=None,
        requested_by="billing",
    )
    assert await OutboxRepository(conn).state(operation_id) == "pending"
