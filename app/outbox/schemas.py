"""Response bodies of /v1/operations: the state of outbox commands."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel

from app.http.schemas import UpstreamError
from app.invoices.commands import OperationKind


class OperationOut(BaseModel):
    id: str
    kind: OperationKind
    state: Literal["pending", "in_flight", "succeeded", "failed"]
    invoiceNumber: str
    merchantProfile: str
    attempts: int
    lastError: UpstreamError | None = None
    createdAt: dt.datetime
    updatedAt: dt.datetime
    completedAt: dt.datetime | None = None
    links: dict[str, str]


class OperationPage(BaseModel):
    items: list[OperationOut]
    nextCursor: str | None = None
