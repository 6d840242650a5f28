"""Issue 9: the status -> event mapping says what happened (a rejected review is no `invoice.sent`),
and an answer's `_supportedActions` decides which actions the facade lets through."""

from __future__ import annotations

import pytest

from app.events.types import EventType
from app.invoices.commands import OperationKind
from app.invoices.service import transition_refusal
from app.invoices.upstream_state import UpstreamState, status_event, supported_actions


@pytest.mark.parametrize(
    ("old", "new", "history", "event"),
    [
        ("SENT", "PENDING", "PENDING", EventType.PAYMENT_PENDING),
        ("PARTIAL", "PENDING", "PENDING", EventType.PAYMENT_PENDING),
        ("PENDING", "SENT", "REJECTED", EventType.PAYMENT_REJECTED),
        ("PENDING", "CREATED", "REJECTED", EventType.PAYMENT_REJECTED),
        ("PENDING", "PARTIAL", "REJECTED", EventType.PAYMENT_REJECTED),
        ("PENDING", "PARTIAL", "PAYMENT", EventType.PARTIALLY_PAID),
        ("PENDING", "PAID", "PAYMENT", EventType.PAID),
        ("SENT", "PARTIAL", "PAYMENT", EventType.PARTIALLY_PAID),
        ("CREATED", "SENT", "SEND", EventType.SENT),
        ("SENT", "SENT", "REMINDER", None),
    ],
)
def test_status_event(old, new, history, event):
    assert status_event(old, new, latest_history=history) is event


def test_a_review_decided_never_reads_as_sent_or_a_second_partial_payment():
    for old_status in ("CREATED", "SENT", "PARTIAL"):
        event = status_event("PENDING", old_status, latest_history="REJECTED")
        assert event not in (EventType.SENT, EventType.PARTIALLY_PAID, EventType.PUBLISHED)


def test_latest_history_is_the_newest_entry():
    body = {
        "status": "PARTIAL",
        "invoiceHistory": [
            {"event": "PAYMENT", "date": "2026-12-01T10:00:00.000Z"},
            {"event": "rejected", "date": "2026-12-02T10:00:00.000Z"},
        ],
    }
    assert UpstreamState.from_body(body).latest_history_event == "REJECTED"


def test_accepted_is_no_status():
    assert UpstreamState.from_body({"status": "ACCEPTED", "reason": "ACCEPTED"}).status is None


def test_supported_actions_are_read_from_names_or_objects():
    assert supported_actions({}) is None
    assert supported_actions({"_supportedActions": "send"}) is None
    body = {"_supportedActions": ["Deliver", {"name": "cancel"}, "refund", 7]}
    assert supported_actions(body) == {"send", "cancel"}


def test_supported_actions_decide_over_the_status_table():
    # The table alone refuses a send from CANCELED ...
    assert transition_refusal("CANCELED", None, OperationKind.SEND)
    # ... and allows a cancel from SENT, unless Cybersource's answer says otherwise.
    assert transition_refusal("SENT", None, OperationKind.CANCEL) is None
    upstream = {"status": "SENT", "_supportedActions": ["send", "update"]}
    assert "allows only: send, update" in transition_refusal("SENT", upstream, OperationKind.CANCEL)
    assert transition_refusal("SENT", upstream, OperationKind.SEND) is None
