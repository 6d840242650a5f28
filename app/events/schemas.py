"""Response bodies of /v1/events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from app.events.types import EventType


class EventOut(BaseModel):
    id: int
    type: EventType
    invoiceNumber: str | None = Field(
        description="The invoice the event is about; null for an event about no invoice "
        "(`subscription.disabled`)"
    )
    merchantProfile: str
    operationId: str | None = None
    data: dict[str, Any]
    createdAt: dt.datetime


class EventPage(BaseModel):
    items: list[EventOut]
    nextCursor: str | None = Field(
        description="pass as `after` to continue; stays put when nothing is new"
    )
