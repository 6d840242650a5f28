"""One table of commands: everything about each kind of outbox command of an invoice, in one place.

A new kind is added to `OperationKind` and then to `command()`; mypy refuses the enum member until
the table has its entry (`assert_never`), and the relay's dispatch (`delivery.py`) is exhaustive the
same way, so a forgotten kind cannot fall through to another kind's upstream call.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

from app.events.types import EventType


class OperationKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    PUBLISH = "publish"
    SEND = "send"
    CANCEL = "cancel"


class InvoiceStatus(StrEnum):
    """Cybersource's invoice statuses (README's lifecycle table)."""

    DRAFT = "DRAFT"
    CREATED = "CREATED"
    SENT = "SENT"
    PARTIAL = "PARTIAL"
    PAID = "PAID"
    CANCELED = "CANCELED"
    PENDING = "PENDING"  # a payment under review: allows no action until it is decided


class ReconcileRule(StrEnum):
    """After an ambiguous failure, how to tell from the upstream invoice whether the call was
    applied."""

    MATCHES_REQUEST = "matches_request"  # create: an invoice with our number and our content exists
    REAPPLY = "reapply"  # update: a full replacement is safe to apply again
    LEFT_DRAFT = "left_draft"  # publish: the invoice is no longer a draft
    SENT_SINCE_BASELINE = (
        "sent_since_baseline"  # send: status or e-mail count moved since before the send
    )
    IS_CANCELED = "is_canceled"  # cancel: the invoice is canceled


@dataclass(frozen=True, slots=True)
class Command:
    kind: OperationKind
    # Statuses the action is allowed from; None: the invoice does not exist yet (create).
    allowed_from: frozenset[InvoiceStatus] | None
    # The HTTP status of the final answer when the command succeeded.
    success_status: int
    # The event the delivered command writes.
    event: EventType
    reconcile: ReconcileRule
    # Whether the relay records the upstream status and e-mail count before the first attempt.
    needs_baseline: bool = False


_S = InvoiceStatus


def command(kind: OperationKind) -> Command:
    match kind:
        case OperationKind.CREATE:
            return Command(kind, None, 201, EventType.CREATED, ReconcileRule.MATCHES_REQUEST)
        case OperationKind.UPDATE:
            return Command(
                kind,
                frozenset({_S.DRAFT, _S.CREATED, _S.SENT}),
                200,
                EventType.UPDATED,
                ReconcileRule.REAPPLY,
            )
        case OperationKind.PUBLISH:
            return Command(
                kind, frozenset({_S.DRAFT}), 200, EventType.PUBLISHED, ReconcileRule.LEFT_DRAFT
            )
        case OperationKind.SEND:
            return Command(
                kind,
                frozenset({_S.DRAFT, _S.CREATED, _S.SENT, _S.PARTIAL}),
                200,
                EventType.SENT,
                ReconcileRule.SENT_SINCE_BASELINE,
                needs_baseline=True,
            )
        case OperationKind.CANCEL:
            return Command(
                kind,
                frozenset({_S.DRAFT, _S.CREATED, _S.SENT}),
                200,
                EventType.CANCELED,
                ReconcileRule.IS_CANCELED,
            )
        case _:
            assert_never(kind)


COMMANDS: dict[OperationKind, Command] = {kind: command(kind) for kind in OperationKind}
# The lifecycle events that a delivered command writes itself.
COMMAND_EVENTS: frozenset[EventType] = frozenset(entry.event for entry in COMMANDS.values())
# Statuses a payer can still move without a command of ours (payments, a pending review).
RECONCILED_STATUSES = (_S.CREATED, _S.SENT, _S.PARTIAL, _S.PENDING)
