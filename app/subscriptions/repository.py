"""The subscriptions and their deliveries: create, read, change, rotate the secret, disable, delete;
and the deliveries as the push relay's queue.

A subscription's deliveries are written by `EventRepository.insert`, in the event's own statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.events.repository import COMMITTED_CUTOFF_CTES, PUSH_CHANNEL
from app.kit.sql import BaseRepository, to_json
from app.outbox.repository import Finish, Reschedule


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    id: uuid.UUID
    seq: int
    owner: str
    sees_all_owners: bool
    profiles: list[str]
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Disabled:
    """A subscription a failed delivery switched off, with what the event about it needs."""

    id: uuid.UUID
    owner: str
    url: str


# Only the current secret is ever read back, for the answer that shows it once.
_COLUMNS = (
    "id, seq, owner, sees_all_owners, profiles, url, event_types, description, enabled, "
    "disabled_reason, disabled_at, "
    "CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END "
    "AS previous_secret_expires_at, created_at, updated_at, secret"
)


class SubscriptionRepository(BaseRepository):
    async def insert(
        self,
        *,
        subscription_id: uuid.UUID,
        owner: str,
        sees_all_owners: bool,
        profiles: Sequence[str],
        url: str,
        event_types: Sequence[str],
        description: str | None,
        secret: str,
    ) -> SubscriptionRow:
        row = await self._row(
            SubscriptionRow,
            f"""
            INSERT INTO subscriptions (id, owner, sees_all_owners, profiles, url, event_types,
                                       description, secret)
            VALUES (:id, :owner, :all, :profiles, :url, :types, :description, :secret)
            RETURNING {_COLUMNS}
            """,  # noqa: S608 (fixed text)
            id=subscription_id,
            owner=owner,
            all=sees_all_owners,
            profiles=list(profiles),
            url=url,
            types=list(event_types),
            description=description,
            secret=secret,
        )
        assert row is not None
        return row

    async def get(
        self, subscription_id: uuid.UUID, *, for_update: bool = False
    ) -> SubscriptionRow | None:
        lock = " FOR UPDATE" if for_update else ""
        return await self._row(
            SubscriptionRow,
            f"SELECT {_COLUMNS} FROM subscriptions WHERE id = :id{lock}",  # noqa: S608 (fixed text)
            id=subscription_id,
        )

    async def list_page(
        self, *, owner: str | None, after_seq: int | None, limit: int
    ) -> list[SubscriptionRow]:
        clauses = ["TRUE"]
        params: dict[str, Any] = {"limit": limit}
        if owner is not None:
            clauses.append("owner = :owner")
            params["owner"] = owner
        if after_seq is not None:
            clauses.append("seq > :after")
            params["after"] = after_seq
        return await self._rows(
            SubscriptionRow,
            f"SELECT {_COLUMNS} FROM subscriptions WHERE {' AND '.join(clauses)} "  # noqa: S608
            "ORDER BY seq LIMIT :limit",
            **params,
        )

    async def update(
        self,
        subscription_id: uuid.UUID,
        *,
        url: str | None,
        event_types: Sequence[str] | None,
        enabled: bool | None,
        description: str | None,
        set_description: bool,
    ) -> SubscriptionRow | None:
        """Change what was given; enabling clears the reason it was disabled."""
        return await self._row(
            SubscriptionRow,
            f"""
            UPDATE subscriptions SET url = COALESCE(:url, url),
                   event_types = COALESCE(CAST(:types AS text[]), event_types),
                   description = CASE WHEN :set_description THEN :description ELSE description END,
                   enabled = COALESCE(:enabled, enabled),
                   disabled_reason = CASE WHEN COALESCE(:enabled, enabled) THEN NULL
                       WHEN :enabled IS NOT NULL AND enabled THEN 'disabled by its owner'
                       ELSE disabled_reason END,
                   disabled_at = CASE WHEN COALESCE(:enabled, enabled) THEN NULL
                       WHEN :enabled IS NOT NULL AND enabled THEN now() ELSE disabled_at END,
                   updated_at = now()
            WHERE id = :id RETURNING {_COLUMNS}
            """,  # noqa: S608 (fixed text)
            id=subscription_id,
            url=url,
            types=None if event_types is None else list(event_types),
            enabled=enabled,
            description=description,
            set_description=set_description,
        )

    async def rotate_secret(
        self, subscription_id: uuid.UUID, *, secret: str, grace_seconds: float
    ) -> SubscriptionRow | None:
        """The new secret signs from now on; the current one alongside it for the grace period."""
        return await self._row(
            SubscriptionRow,
            f"""
            UPDATE subscriptions SET previous_secret = secret,
                   previous_secret_expires_at = now() + make_interval(secs => :grace),
                   secret = :secret, updated_at = now()
            WHERE id = :id RETURNING {_COLUMNS}
            """,  # noqa: S608 (fixed text)
            id=subscription_id,
            secret=secret,
            grace=grace_seconds,
        )

    async def delete(self, subscription_id: uuid.UUID) -> bool:
        """Delete it with its deliveries (one being delivered finishes, and its result is
        dropped)."""
        row = await self._one(
            "DELETE FROM subscriptions WHERE id = :id RETURNING id", id=subscription_id
        )
        return row is not None

    async def disable(self, reasons: dict[uuid.UUID, str]) -> list[Disabled]:
        """Switch off the subscriptions that are still on; returns those this call switched off."""
        if not reasons:
            return []
        ids = list(reasons)
        return await self._rows(
            Disabled,
            "UPDATE subscriptions s SET enabled = false, disabled_reason = x.reason, "
            "disabled_at = now(), updated_at = now() "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:reasons AS text[])) AS x(id, reason) "
            "WHERE s.id = x.id AND s.enabled RETURNING s.id, s.owner, s.url",
            ids=[str(i) for i in ids],
            reasons=[reasons[i] for i in ids],
        )


# --- deliveries: the push relay's queue, and what the API shows of it -----------------------------


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery a relay holds under its lease, with what posting it needs (event, URL,
    secrets)."""

    id: uuid.UUID
    kind: str  # push.event | push.ping (the relay's metrics label)
    attempts: int
    created_at: datetime  # the first attempt: the retry window runs from there
    subscription_id: uuid.UUID
    subscription_owner: str
    sees_all_owners: bool
    url: str
    payload: dict[str, Any] | None
    event_id: int | None
    event_txid: int | None
    event_type: str | None
    event_invoice_number: str | None
    event_merchant_profile: str | None
    event_operation_id: uuid.UUID | None
    event_data: dict[str, Any] | None
    event_created_at: datetime | None
    secret: str = field(repr=False)
    previous_secret: str | None = field(repr=False)
    needs_reconcile: bool = False  # a POST is simply repeated: receivers de-duplicate on webhook-id
    failure_counts: dict[str, int] = field(default_factory=dict)

    @property
    def is_event(self) -> bool:
        return self.event_id is not None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: uuid.UUID
    seq: int
    subscription_id: uuid.UUID
    kind: str
    event_id: int | None
    event_type: str | None
    state: str
    attempts: int
    available_at: datetime
    last_error: dict[str, Any] | None
    attempt_log: list[dict[str, Any]]
    created_at: datetime
    completed_at: datetime | None


ATTEMPT_LOG_LENGTH = 50
# Append one attempt to the log, keeping the newest ATTEMPT_LOG_LENGTH.
_LOGGED = (
    "CASE WHEN jsonb_array_length(d.attempt_log) >= {n} THEN d.attempt_log - 0 "
    "ELSE d.attempt_log END || jsonb_build_array({entry})"
)
_DELIVERY_COLUMNS = (
    "d.id, d.seq, d.subscription_id, d.kind, d.event_id, e.type AS event_type, d.state, "
    "d.attempts, d.available_at, d.last_error, d.attempt_log, d.created_at, d.completed_at"
)


class DeliveryRepository(BaseRepository):
    """The `subscription_deliveries` table as the relay's `Queue`, fenced on the lease like the
    outbox.

    A delivery of an event is claimed only when every older event delivery of its subscription is
    done (delivered or failed for good), and only once the feed would show the event: in (txid, seq)
    order below the oldest running transaction, so per subscription events go out in the feed's
    order. Pings wait for nothing, and go out even to a disabled subscription (that is what a test
    is for).
    """

    async def claim_due(
        self, *, owner: str, limit: int, lease_seconds: float
    ) -> list[ClaimedDelivery]:
        return await self._rows(
            ClaimedDelivery,
            f"""
            WITH {COMMITTED_CUTOFF_CTES},
            due AS (
                SELECT d.id, d.subscription_id, d.event_id FROM subscription_deliveries d
                JOIN subscriptions s ON s.id = d.subscription_id
                CROSS JOIN cutoff
                WHERE ((d.state = 'pending' AND d.available_at <= now())
                       OR (d.state = 'in_flight' AND d.lease_expires_at < now()))
                  AND (d.kind = 'ping' OR (s.enabled AND d.txid < cutoff.txid AND NOT EXISTS (
                      SELECT 1 FROM subscription_deliveries p
                      WHERE p.subscription_id = d.subscription_id AND p.kind = 'event'
                        AND (p.txid, p.seq) < (d.txid, d.seq)
                        AND p.state IN ('pending', 'in_flight'))))
                ORDER BY d.available_at, d.txid, d.seq
                LIMIT :limit
                FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE subscription_deliveries d SET state = 'in_flight', lease_owner = :owner,
                   lease_expires_at = now() + make_interval(secs => :lease),
                   attempts = d.attempts + 1,
                   first_attempt_at = COALESCE(d.first_attempt_at, now()), updated_at = now()
            FROM due JOIN subscriptions s ON s.id = due.subscription_id
                 LEFT JOIN events e ON e.id = due.event_id
            WHERE d.id = due.id
            RETURNING d.id, 'push.' || d.kind AS kind, d.attempts, d.first_attempt_at AS created_at,
                      d.subscription_id, s.owner AS subscription_owner, s.sees_all_owners,
                      s.url, d.payload,
                      e.id AS event_id, e.txid AS event_txid, e.type AS event_type,
                      e.invoice_number AS event_invoice_number,
                      e.merchant_profile AS event_merchant_profile,
                      e.operation_id AS event_operation_id, e.data AS event_data,
                      e.created_at AS event_created_at, s.secret,
                      CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END
                          AS previous_secret,
                      false AS needs_reconcile, '{{}}'::jsonb AS failure_counts
            """,  # noqa: S608 (fixed text)
            owner=owner,
            limit=limit,
            lease=lease_seconds,
        )

    async def renew(
        self, owner: str, job_ids: Sequence[uuid.UUID], lease_seconds: float
    ) -> set[uuid.UUID]:
        if not job_ids:
            return set()
        rows = await self._all(
            "UPDATE subscription_deliveries SET "
            "lease_expires_at = now() + make_interval(secs => :lease) "
            "WHERE id = ANY(CAST(:ids AS uuid[])) AND lease_owner = :owner AND state = 'in_flight' "
            "RETURNING id",
            ids=[str(job_id) for job_id in job_ids],
            owner=owner,
            lease=lease_seconds,
        )
        return {row["id"] for row in rows}

    async def reschedule(self, owner: str, batch: Sequence[Reschedule]) -> set[uuid.UUID]:
        """Another attempt later; the attempt that failed goes to the log."""
        if not batch:
            return set()
        items = [{"id": str(r.job_id), "delay": r.delay_seconds, "error": r.error} for r in batch]
        logged = _LOGGED.format(n=ATTEMPT_LOG_LENGTH, entry="x.error")
        rows = await self._all(
            f"""
            UPDATE subscription_deliveries d SET state = 'pending', lease_owner = NULL,
                   lease_expires_at = NULL, available_at = now() + make_interval(secs => x.delay),
                   last_error = x.error, attempt_log = {logged}, updated_at = now()
            FROM jsonb_to_recordset(CAST(:items AS jsonb)) AS x(id uuid, delay float8, error jsonb)
            WHERE d.id = x.id AND d.lease_owner = :owner AND d.state = 'in_flight'
            RETURNING d.id
            """,  # noqa: S608 (fixed text)
            items=to_json(items),
            owner=owner,
        )
        return {row["id"] for row in rows}

    async def finish(self, owner: str, batch: Sequence[Finish]) -> set[uuid.UUID]:
        if not batch:
            return set()
        items = [
            {"id": str(f.operation_id), "state": f.state, "result": f.result, "error": f.error}
            for f in batch
        ]
        logged = _LOGGED.format(n=ATTEMPT_LOG_LENGTH, entry="COALESCE(x.result, x.error)")
        rows = await self._all(
            f"""
            UPDATE subscription_deliveries d SET state = x.state, last_error = x.error,
                   attempt_log = {logged}, lease_owner = NULL, lease_expires_at = NULL,
                   completed_at = now(), updated_at = now()
            FROM jsonb_to_recordset(CAST(:items AS jsonb))
                 AS x(id uuid, state text, result jsonb, error jsonb)
            WHERE d.id = x.id AND d.lease_owner = :owner AND d.state = 'in_flight'
            RETURNING d.id
            """,  # noqa: S608 (fixed text)
            items=to_json(items),
            owner=owner,
        )
        return {row["id"] for row in rows}

    async def notify_finished(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Nobody waits for a delivery."""

    async def release(self, owner: str) -> int:
        rows = await self._all(
            "UPDATE subscription_deliveries SET state = 'pending', lease_owner = NULL, "
            "lease_expires_at = NULL, attempts = GREATEST(attempts - 1, 0), updated_at = now() "
            "WHERE lease_owner = :owner AND state = 'in_flight' RETURNING id",
            owner=owner,
        )
        return len(rows)

    # --- the API's side -------------------------------------------------------------------------

    async def queue_ping(self, subscription_id: uuid.UUID, payload: dict[str, Any]) -> DeliveryRow:
        row = await self._row(
            DeliveryRow,
            f"""
            WITH d AS (INSERT INTO subscription_deliveries (subscription_id, kind, payload)
                       VALUES (:sub, 'ping', CAST(:payload AS jsonb)) RETURNING *),
            woken AS (SELECT pg_notify(:channel, ''))
            SELECT {_DELIVERY_COLUMNS} FROM d LEFT JOIN events e ON e.id = d.event_id, woken
            """,  # noqa: S608 (fixed text)
            sub=subscription_id,
            payload=to_json(payload),
            channel=PUSH_CHANNEL,
        )
        assert row is not None
        return row

    async def get(self, subscription_id: uuid.UUID, delivery_id: uuid.UUID) -> DeliveryRow | None:
        return await self._row(
            DeliveryRow,
            f"SELECT {_DELIVERY_COLUMNS} FROM subscription_deliveries d "  # noqa: S608
            "LEFT JOIN events e ON e.id = d.event_id WHERE d.id = :id AND d.subscription_id = :sub",
            id=delivery_id,
            sub=subscription_id,
        )

    async def list_page(
        self, subscription_id: uuid.UUID, *, state: str | None, before_seq: int | None, limit: int
    ) -> list[DeliveryRow]:
        """Newest first."""
        clauses = ["d.subscription_id = :sub"]
        params: dict[str, Any] = {"sub": subscription_id, "limit": limit}
        if state is not None:
            clauses.append("d.state = :state")
            params["state"] = state
        if before_seq is not None:
            clauses.append("d.seq < :before")
            params["before"] = before_seq
        return await self._rows(
            DeliveryRow,
            f"SELECT {_DELIVERY_COLUMNS} FROM subscription_deliveries d "  # noqa: S608
            f"LEFT JOIN events e ON e.id = d.event_id WHERE {' AND '.join(clauses)} "
            "ORDER BY d.seq DESC LIMIT :limit",
            **params,
        )

    async def requeue_failed(self, subscription_id: uuid.UUID, delivery_id: uuid.UUID) -> bool:
        """A delivery that failed for good goes out again, with a fresh retry window."""
        row = await self._one(
            "WITH d AS (UPDATE subscription_deliveries SET state = 'pending', attempts = 0, "
            "available_at = now(), first_attempt_at = NULL, "
            "completed_at = NULL, updated_at = now() "
            "WHERE id = :id AND subscription_id = :sub AND state = 'failed' RETURNING id) "
            "SELECT d.id, pg_notify(:channel, '') FROM d",
            id=delivery_id,
            sub=subscription_id,
            channel=PUSH_CHANNEL,
        )
        return row is not None
