"""Response bodies of /v1/operations: the state of outbox commands."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel

from app.http.schemas import UpstreamError
from app.invoices.commands import OperationKind

# `unknown`: the relay gave up while no reading could tell whether Cybersource applied it (operators
# check and re-drive; a re-drive reads first). `superseded`: refused because a cancel reached the
# invoice first. Both are final.
OperationState = Literal["pending", "in_flight", "succeeded", "failed", "unknown", "superseded"]


class OperationOut(BaseModel):
    id: str
    kind: OperationKind
    state: OperationState
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
