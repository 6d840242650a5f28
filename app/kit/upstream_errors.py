"""The one mapping from Cybersource's errors to the facade's problems.

Two shapes reach callers: an error raised by a call made while they wait (a refresh, invoice
settings), and the error record a failed outbox command keeps (`last_error`), which its idempotency
key replays.
"""

from __future__ import annotations

from typing import Any

from app import errors
from app.cybersource.errors import AuthenticationError, CybersourceError, RejectedError


def error_record(exc: CybersourceError, kind: str) -> dict[str, Any]:
    """What a command keeps of a failed call (no body, no secret): shown as `lastError`."""
    record: dict[str, Any] = {
        "kind": kind,
        "status": exc.status,
        "message": exc.message,
        "correlationId": exc.correlation_id,
    }
    if isinstance(exc, AuthenticationError) and exc.clock_skew_seconds is not None:
        record["reason"] = "CLOCK_SKEW"
    if isinstance(exc, RejectedError):
        record.update(
            reason=exc.reason,
            details=[
                {"field": d.get("field"), "reason": d.get("reason"), "message": d.get("message")}
                for d in exc.details
                if isinstance(d, dict)
            ],
        )
    return record


def _field_errors(details: Any) -> list[dict[str, Any]] | None:
    fields = [
        {"field": d.get("field"), "message": d.get("reason") or d.get("message")}
        for d in details or []
        if isinstance(d, dict)
    ]
    return fields or None


def call_problem(exc: CybersourceError, what: str) -> errors.ApiError:
    """A call made while the caller waits failed: `what` names it ("read the invoice")."""
    if isinstance(exc, RejectedError):
        return errors.UpstreamRejected(
            f"Cybersource refused to {what}: {exc.message}", errors=_field_errors(exc.details)
        )
    if isinstance(exc, AuthenticationError):
        if exc.clock_skew_seconds is not None:
            return errors.UpstreamClockSkew(f"Cybersource refused to {what}: {exc.message}")
        return errors.UpstreamUnavailable("Cybersource refused the facade's credentials.")
    return errors.UpstreamUnavailable(f"Cybersource could not be reached: {exc.message}")


def command_problem(
    error: dict[str, Any],
    *,
    kind: str,
    invoice_number: str,
    operation_id: str,
    upstream: dict[str, Any] | None,
) -> errors.ApiError:
    """The problem a failed command answers with: Cybersource's refusal, or that it could not be
    reached."""
    reason = (error.get("reason") or "").upper()
    common: dict[str, Any] = {"operationId": operation_id, "upstream": upstream}
    message = error.get("message") or "Cybersource refused the request"
    if error.get("kind") == "rejected":
        if reason == "DUPLICATE_RECORD":
            return errors.InvoiceNumberTaken(
                f"Cybersource already has invoice {invoice_number}: {message}", **common
            )
        if reason == "ACTION_NOT_ALLOWED":
            return errors.ActionNotAllowed(
                f"Cybersource does not allow {kind} in the invoice's current state: {message}",
                **common,
            )
        return errors.UpstreamRejected(
            f"Cybersource rejected the {kind}: {message}",
            errors=_field_errors(error.get("details")),
            **common,
        )
    if error.get("kind") == "superseded":
        return errors.ActionNotAllowed(
            f"The invoice was canceled before the {kind} reached Cybersource; nothing was done.",
            **common,
        )
    if reason == "CLOCK_SKEW":
        return errors.UpstreamClockSkew(
            f"The {kind} could not be delivered to Cybersource: {message}", **common
        )
    return errors.UpstreamUnavailable(
        f"The {kind} could not be delivered to Cybersource: {message}", **common
    )
