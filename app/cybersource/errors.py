"""The upstream error tree the outbox relay decides on.

CybersourceError
├── TransientError        safe to retry: 5xx, 429 (with Retry-After), connect failures before
│                         sending
│   └── GeneralSystemFailureError (client.py): 502 "General system failure", which Cybersource also
│                         answers for account configuration problems: retried a few times, never
│                         forever
├── AmbiguousError        the request may have been applied: read timeout, connection reset after
│                         sending
├── RejectedError         final: 400 (validation, DUPLICATE_RECORD, ACTION_NOT_ALLOWED), 404, 409,
│                         412
└── AuthenticationError   401/403: credentials or signing are wrong; retrying will not help
"""

from __future__ import annotations

from typing import Any


class CybersourceError(Exception):
    """Base of every failure of an upstream call."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        correlation_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.correlation_id = correlation_id
        self.body = body


class TransientError(CybersourceError):
    """Not applied upstream; retry after `retry_after` seconds when the server said so."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class AmbiguousError(CybersourceError):
    """The request left this process and no answer came back: it may or may not have been
    applied."""


class RejectedError(CybersourceError):
    """Cybersource refused the request; the same request will be refused again."""

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        details: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason
        self.details = details or []

    @property
    def is_duplicate_record(self) -> bool:
        return (self.reason or "").upper() == "DUPLICATE_RECORD"

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def is_action_not_allowed(self) -> bool:
        return (self.reason or "").upper() == "ACTION_NOT_ALLOWED"


class AuthenticationError(CybersourceError):
    """401 or 403: the facade's credentials or signature were refused.

    `clock_skew_seconds`: set when the answer's `Date` is far from this machine's clock, the likely
    cause (a signature's Date, or a JWT's `iat`, more than about five minutes off is refused).
    Positive when Cybersource's clock is ahead of ours.
    """

    def __init__(
        self, message: str, *, clock_skew_seconds: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.clock_skew_seconds = clock_skew_seconds
