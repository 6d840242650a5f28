"""Request and response bodies of /v1/subscriptions (push delivery of the events feed)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from app.events.types import EventType

# Scopes of their own: reading the feed (invoices:read) does not let a key point the facade at a
# URL.
SUBSCRIPTIONS_READ = "subscriptions:read"
SUBSCRIPTIONS_WRITE = "subscriptions:write"

MAX_EVENT_TYPES = 50
MAX_GRACE_SECONDS = 7 * 24 * 3600
DeliveryState = Literal["pending", "in_flight", "succeeded", "failed"]
DeliveryKind = Literal["event", "ping"]
# The enum's values arrive as JSON strings (strict mode would want enum members).
EventTypeIn = Annotated[EventType, Strict(False)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SubscriptionCreate(_Body):
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="Where events are POSTed. `https` in production unless the host is on "
        "`SUBSCRIPTION_ALLOWED_HOSTS`; redirects are not followed.",
    )
    eventTypes: list[EventTypeIn] = Field(
        default_factory=list,
        max_length=MAX_EVENT_TYPES,
        description="The event types to deliver; empty: all of them.",
    )
    description: str | None = Field(default=None, max_length=500)


class SubscriptionPatch(_Body):
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    eventTypes: list[EventTypeIn] | None = Field(default=None, max_length=MAX_EVENT_TYPES)
    enabled: bool | None = Field(
        default=None,
        description="false stops deliveries (events meanwhile are not queued: read them from the "
        "feed); true resumes what is still pending and clears `disabledReason`.",
    )
    description: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _something(self) -> SubscriptionPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of url, eventTypes, enabled, description")
        return self


class SecretRotation(_Body):
    gracePeriodSeconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the old secret keeps signing alongside the new one "
        "(default `SUBSCRIPTION_SECRET_GRACE_SECONDS`).",
    )


class SubscriptionOut(BaseModel):
    id: str
    url: str
    eventTypes: list[EventType]
    description: str | None = None
    enabled: bool
    disabledReason: str | None = None
    disabledAt: dt.datetime | None = None
    owner: str
    previousSecretExpiresAt: dt.datetime | None = Field(
        default=None, description="Until then the previous secret signs alongside the current one."
    )
    createdAt: dt.datetime
    updatedAt: dt.datetime


class SubscriptionWithSecret(SubscriptionOut):
    secret: str | None = Field(
        description=(
            "The signing secret (`whsec_` + base64), shown in this answer only. A replay of "
            "the same Idempotency-Key answers null: rotate the secret if it was lost."
        )
    )


class SubscriptionPage(BaseModel):
    items: list[SubscriptionOut]
    nextCursor: str | None = None


class DeliveryAttempt(BaseModel):
    at: dt.datetime
    statusCode: int | None = None
    latencyMs: float | None = None
    error: str | None = None
    responseBodyPrefix: str | None = Field(
        default=None, description="At most the first 256 bytes of the answer."
    )


class DeliveryOut(BaseModel):
    id: str
    subscriptionId: str
    kind: DeliveryKind
    webhookId: str = Field(description="The `webhook-id` header: the same on every attempt.")
    eventId: int | None = None
    eventType: str
    state: DeliveryState
    attempts: int
    nextAttemptAt: dt.datetime | None = Field(
        default=None, description="When the next attempt is due (pending deliveries)."
    )
    lastError: dict[str, Any] | None = None
    attemptLog: list[DeliveryAttempt]
    createdAt: dt.datetime
    completedAt: dt.datetime | None = None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    nextCursor: str | None = None


class Ping(BaseModel):
    """The body of a `ping` (POST /v1/subscriptions/{id}/test); not a feed event."""

    type: Literal["ping"] = "ping"
    subscriptionId: str
    createdAt: dt.datetime
    data: dict[str, str]
