"""Push subscriptions: create, read, change, rotate the secret, delete, test; their deliveries.

A subscription is its creator's: only it (or an admin) sees or changes it. What it receives is what
the creator may read through the feed at creation time: its own invoices' events unless it is an
admin, and only its merchant profiles. Changes run under the caller's Idempotency-Key. A signing
secret is shown in the answer that creates it and never again: the answer kept for replays has it as
null (a replay of the same key cannot hand it out again, and the idempotency table never holds it).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app import errors
from app.auth.principal import READ, Caller
from app.events.types import EventType
from app.http.mutations import Mutation
from app.idempotency.executor import IdempotentExecutor, Outcome
from app.kit.cursors import decode_ids, encode_cursor
from app.settings import Settings
from app.subscriptions.repository import (
    DeliveryRepository,
    DeliveryRow,
    SubscriptionRepository,
    SubscriptionRow,
)
from app.subscriptions.schemas import (
    DeliveryAttempt,
    DeliveryOut,
    DeliveryPage,
    DeliveryState,
    Ping,
    SecretRotation,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionPage,
    SubscriptionPatch,
    SubscriptionWithSecret,
)
from app.subscriptions.signing import message_id, new_secret
from app.subscriptions.targets import ForbiddenTarget, check_resolved, target_policy

PING_MESSAGE = "A test from invoicing-gateway: answer 2xx and do nothing."


def subscription_out(row: SubscriptionRow) -> SubscriptionOut:
    return SubscriptionOut(
        id=str(row.id),
        url=row.url,
        eventTypes=[EventType(value) for value in row.event_types],
        description=row.description,
        enabled=row.enabled,
        disabledReason=row.disabled_reason,
        disabledAt=row.disabled_at,
        owner=row.owner,
        previousSecretExpiresAt=row.previous_secret_expires_at,
        createdAt=row.created_at,
        updatedAt=row.updated_at,
    )


def delivery_out(row: DeliveryRow) -> DeliveryOut:
    return DeliveryOut(
        id=str(row.id),
        subscriptionId=str(row.subscription_id),
        kind="ping" if row.kind == "ping" else "event",
        webhookId=message_id(row.id, row.event_id),
        eventId=row.event_id,
        eventType=row.event_type or "ping",
        state=cast(DeliveryState, row.state),  # the table's check constraint
        attempts=row.attempts,
        nextAttemptAt=row.available_at if row.state == "pending" else None,
        lastError=row.last_error,
        attemptLog=[DeliveryAttempt.model_validate(entry) for entry in row.attempt_log],
        createdAt=row.created_at,
        completedAt=row.completed_at,
    )


def subscription_not_found(subscription_id: uuid.UUID) -> errors.NotFound:
    return errors.NotFound(f"There is no subscription {subscription_id}.")


def _visible(caller: Caller, row: SubscriptionRow | None) -> bool:
    return row is not None and (row.owner == caller.client or caller.is_admin)


class SubscriptionService:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        reads: AsyncEngine,
        settings: Settings,
        executor: IdempotentExecutor,
    ) -> None:
        self.engine = engine
        self.reads = reads
        self.settings = settings
        self.executor = executor
        self.policy = target_policy(settings)

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, caller: Caller, subscription_id: uuid.UUID) -> SubscriptionOut:
        async with self.reads.connect() as conn:
            row = await SubscriptionRepository(conn).get(subscription_id)
        if row is None or not _visible(caller, row):
            raise subscription_not_found(subscription_id)
        return subscription_out(row)

    async def page(
        self, caller: Caller, *, owner: str | None, cursor: str | None, limit: int
    ) -> SubscriptionPage:
        after = None if cursor is None else decode_ids(cursor, 1)[0]
        async with self.reads.connect() as conn:
            rows = await SubscriptionRepository(conn).list_page(
                owner=caller.owner_filter(owner), after_seq=after, limit=limit + 1
            )
        page, more = rows[:limit], len(rows) > limit
        return SubscriptionPage(
            items=[subscription_out(row) for row in page],
            nextCursor=encode_cursor(page[-1].seq) if more else None,
        )

    async def deliveries(
        self,
        caller: Caller,
        subscription_id: uuid.UUID,
        *,
        state: str | None,
        cursor: str | None,
        limit: int,
    ) -> DeliveryPage:
        before = None if cursor is None else decode_ids(cursor, 1)[0]
        async with self.reads.connect() as conn:
            if not _visible(caller, await SubscriptionRepository(conn).get(subscription_id)):
                raise subscription_not_found(subscription_id)
            rows = await DeliveryRepository(conn).list_page(
                subscription_id, state=state, before_seq=before, limit=limit + 1
            )
        page, more = rows[:limit], len(rows) > limit
        return DeliveryPage(
            items=[delivery_out(row) for row in page],
            nextCursor=encode_cursor(page[-1].seq) if more else None,
        )

    # --- changes --------------------------------------------------------------------------------

    async def _check_url(self, url: str) -> None:
        try:
            self.policy.check_url(url)
            await check_resolved(self.policy, url)
        except ForbiddenTarget as exc:
            raise errors.ValidationFailed(
                f"The URL is not allowed: {exc}.", errors=[{"field": "url", "message": str(exc)}]
            ) from exc

    async def _run(
        self,
        caller: Caller,
        request: Mutation,
        body: Any,
        change: Callable[[AsyncConnection], Awaitable[Outcome]],
    ) -> tuple[Outcome, bool]:
        return await self.executor.run_request(caller, request, body, change)

    async def _owned(
        self, conn: AsyncConnection, caller: Caller, subscription_id: uuid.UUID
    ) -> SubscriptionRow:
        row = await SubscriptionRepository(conn).get(subscription_id, for_update=True)
        if row is None or not _visible(caller, row):
            raise subscription_not_found(subscription_id)
        return row

    async def create(
        self, caller: Caller, body: SubscriptionCreate, request: Mutation
    ) -> tuple[Outcome, bool]:
        if READ not in caller.scopes:
            raise errors.Forbidden(
                f"A subscription pushes the events feed: this API key also needs the {READ!r} "
                "scope."
            )
        await self._check_url(body.url)
        secret = new_secret()

        async def insert(conn: AsyncConnection) -> Outcome:
            row = await SubscriptionRepository(conn).insert(
                subscription_id=uuid.uuid4(),
                owner=caller.client,
                sees_all_owners=caller.is_admin,
                profiles=sorted(caller.profiles),
                url=body.url,
                event_types=[str(t) for t in body.eventTypes],
                description=body.description,
                secret=secret,
            )
            shown = SubscriptionWithSecret(**subscription_out(row).model_dump(), secret=None)
            location = {"Location": f"/v1/subscriptions/{row.id}"}
            return Outcome(201, shown.model_dump(mode="json"), location)

        outcome, replayed = await self._run(caller, request, body.model_dump(mode="json"), insert)
        return _with_secret(outcome, replayed, secret, 201), replayed

    async def update(
        self,
        caller: Caller,
        subscription_id: uuid.UUID,
        patch: SubscriptionPatch,
        request: Mutation,
    ) -> tuple[Outcome, bool]:
        if patch.url is not None:
            await self._check_url(patch.url)

        async def change(conn: AsyncConnection) -> Outcome:
            await self._owned(conn, caller, subscription_id)
            row = await SubscriptionRepository(conn).update(
                subscription_id,
                url=patch.url,
                event_types=None
                if patch.eventTypes is None
                else [str(t) for t in patch.eventTypes],
                enabled=patch.enabled,
                description=patch.description,
                set_description="description" in patch.model_fields_set,
            )
            assert row is not None
            return Outcome(200, subscription_out(row).model_dump(mode="json"), {})

        body = patch.model_dump(mode="json", exclude_unset=True)
        return await self._run(caller, request, body, change)

    async def delete(self, caller: Caller, subscription_id: uuid.UUID) -> None:
        async with self.engine.begin() as conn:
            await self._owned(conn, caller, subscription_id)
            await SubscriptionRepository(conn).delete(subscription_id)

    async def rotate_secret(
        self,
        caller: Caller,
        subscription_id: uuid.UUID,
        body: SecretRotation,
        request: Mutation,
    ) -> tuple[Outcome, bool]:
        secret = new_secret()
        grace = body.gracePeriodSeconds
        if grace is None:
            grace = int(self.settings.subscription_secret_grace_seconds)

        async def rotate(conn: AsyncConnection) -> Outcome:
            await self._owned(conn, caller, subscription_id)
            row = await SubscriptionRepository(conn).rotate_secret(
                subscription_id, secret=secret, grace_seconds=grace
            )
            assert row is not None
            shown = SubscriptionWithSecret(**subscription_out(row).model_dump(), secret=None)
            return Outcome(200, shown.model_dump(mode="json"), {})

        outcome, replayed = await self._run(caller, request, body.model_dump(mode="json"), rotate)
        return _with_secret(outcome, replayed, secret, 200), replayed

    async def test(
        self, caller: Caller, subscription_id: uuid.UUID, request: Mutation
    ) -> tuple[Outcome, bool]:
        async def ping(conn: AsyncConnection) -> Outcome:
            await self._owned(conn, caller, subscription_id)
            payload = Ping(
                subscriptionId=str(subscription_id),
                createdAt=datetime.now(UTC),
                data={"message": PING_MESSAGE},
            ).model_dump(mode="json")
            row = await DeliveryRepository(conn).queue_ping(subscription_id, payload)
            return Outcome(202, delivery_out(row).model_dump(mode="json"), {})

        return await self._run(caller, request, None, ping)

    async def retry_delivery(
        self,
        caller: Caller,
        subscription_id: uuid.UUID,
        delivery_id: uuid.UUID,
        request: Mutation,
    ) -> tuple[Outcome, bool]:
        async def requeue(conn: AsyncConnection) -> Outcome:
            subscription = await self._owned(conn, caller, subscription_id)
            deliveries = DeliveryRepository(conn)
            if await deliveries.get(subscription_id, delivery_id) is None:
                raise errors.NotFound(f"There is no delivery {delivery_id} of this subscription.")
            if not subscription.enabled:
                raise errors.Conflict(
                    "The subscription is disabled: enable it first (PATCH enabled=true)."
                )
            if not await deliveries.requeue_failed(subscription_id, delivery_id):
                raise errors.Conflict("Only a delivery in state failed can be retried.")
            row = await deliveries.get(subscription_id, delivery_id)
            assert row is not None
            return Outcome(202, delivery_out(row).model_dump(mode="json"), {})

        return await self._run(caller, request, None, requeue)


def _with_secret(outcome: Outcome, replayed: bool, secret: str, status: int) -> Outcome:
    """The first answer shows the secret; the stored one (and every replay) does not."""
    if replayed or outcome.status != status:
        return outcome
    return Outcome(outcome.status, {**outcome.body, "secret": secret}, outcome.headers)
