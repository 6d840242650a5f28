"""Bodies every feature answers with: problem details and the upstream error they may carry."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    field: str | None = None
    reason: str | None = None
    message: str | None = None


class UpstreamError(BaseModel):
    kind: Literal[
        "rejected",
        "authentication",
        "account",
        "exhausted",
        "transient",
        "ambiguous",
        "reconcile",
        "superseded",
        "unknown",
    ]
    status: int | None = None
    reason: str | None = None
    message: str
    details: list[ErrorDetail] = []
    correlationId: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    retryAfter: int | None = None
    upstream: UpstreamError | None = None
    operationId: str | None = None
