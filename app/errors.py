"""The facade's error tree and the one handler that renders it as problem+json (RFC 9457).

Every expected failure is a subclass of `ApiError` with an HTTP status and a stable `code`; the
`type` URI is derived from the code, so clients can switch on either.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://invoicing-gateway.internal/problems/"


class ApiError(Exception):
    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status_code,
            "code": self.code,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class MalformedRequest(ApiError):
    status_code = 400
    code = "malformed_request"
    title = "The request could not be read"


class MalformedJson(ApiError):
    status_code = 400
    code = "malformed_json"
    title = "The body is not valid JSON"


class IdempotencyKeyMissing(ApiError):
    status_code = 400
    code = "idempotency_key_missing"
    title = "Idempotency-Key header is required"


class IdempotencyKeyInvalid(ApiError):
    status_code = 400
    code = "idempotency_key_invalid"
    title = "Idempotency-Key header is malformed"


class Unauthenticated(ApiError):
    status_code = 401
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"
    title = "Not found"


class InvoiceNotFound(NotFound):
    code = "invoice_not_found"
    title = "Invoice not found"


class OperationNotFound(NotFound):
    code = "operation_not_found"
    title = "Operation not found"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"
    title = "Conflict"


class InvoiceNumberTaken(Conflict):
    code = "invoice_number_taken"
    title = "Invoice number already used"


class ExternalReferenceTaken(Conflict):
    code = "external_reference_taken"
    title = "The externalReference is already used by another of the caller's invoices"


class InvoiceAlreadyStored(Conflict):
    code = "invoice_already_stored"
    title = "The facade already has this invoice"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"
    title = "A request with this Idempotency-Key is still being processed"


class ActionNotAllowed(Conflict):
    code = "action_not_allowed"
    title = "The invoice's state does not allow this action"


class OperationNotRetryable(Conflict):
    code = "operation_not_retryable"
    title = "Only failed operations can be retried"


class ValidationFailed(ApiError):
    status_code = 422
    code = "validation_failed"
    title = "The request body is not valid"


class InvoiceNumberReserved(ValidationFailed):
    code = "invoice_number_reserved"
    title = "The invoice number has the shape of the facade's own numbers"


class BodyTooLarge(ApiError):
    status_code = 413
    code = "body_too_large"
    title = "The body is too large"


class IdempotencyKeyReused(ApiError):
    status_code = 422
    code = "idempotency_key_reused"
    title = "Idempotency-Key was used with a different request"


class UpstreamRejected(ApiError):
    status_code = 422
    code = "upstream_rejected"
    title = "Cybersource rejected the request"


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "service_unavailable"
    title = "Service unavailable"


class UpstreamUnavailable(ApiError):
    status_code = 502
    code = "upstream_unavailable"
    title = "Cybersource could not be reached"


class UpstreamClockSkew(UpstreamUnavailable):
    code = "upstream_clock_skew"
    title = "Cybersource refused the request's Date: the clocks disagree"
