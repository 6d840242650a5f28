"""The outbox table (`operations`): queue, claim under a lease, reschedule, finish, release,
re-drive.

Every statement that finishes or reschedules a command is fenced on its lease owner: a relay whose
lease expired (and whose command another relay took over) changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.kit.sql import BaseRepository, to_json

OUTBOX_CHANNEL = "igw_outbox"
OPERATION_DONE_CHANNEL = "igw_operation_done"
UNFINISHED_STATES = ("pending", "in_flight")
# No relay works on these any more; `unknown` waits for operators (it may have been applied).
FINAL_STATES = ("succeeded", "failed", "superseded", "unknown")


@dataclass(frozen=True, slots=True)
class OperationRow:
    """A command with its invoice's number and owner, as the API and the CLI show it."""

    id: uuid.UUID
    seq: int
    invoice_id: int
    merchant_profile: str
    kind: str
    state: str
    attempts: int
    last_error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    invoice_number: str
    owner: str


@dataclass(frozen=True, slots=True)
class ClaimedOperation:
    """A command a relay holds under its lease, with what delivering it needs."""

    id: uuid.UUID
    invoice_id: int
    merchant_profile: str
    kind: str
    payload: dict[str, Any] | None
    attempts: int
    created_at: datetime
    needs_reconcile: bool
    failure_counts: dict[str, int]
    baseline: dict[str, Any] | None
    invoice_number: str
    traceparent: str | None = None  # the trace of the request that queued it (tracing)


@dataclass(frozen=True, slots=True)
class Finish:
    """The final state of one command, written with others in one batch."""

    operation_id: uuid.UUID
    state: str  # succeeded | failed | superseded | unknown
    result: dict[str, Any] | None
    error: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Reschedule:
    """Another attempt later: its delay, the error, whether to check first, and the failure class
    counted."""

    job_id: uuid.UUID
    delay_seconds: float
    error: dict[str, Any]
    reconcile: bool | None  # None: leave needs_reconcile as it is
    failure_class: str


_OPERATION_WITH_INVOICE = (
    "SELECT o.*, i.invoice_number, i.owner "
    "FROM operations o JOIN invoices i ON i.id = o.invoice_id "
)


class OutboxRepository(BaseRepository):
    async def insert(
        self,
        *,
        operation_id: uuid.UUID,
        invoice_id: int,
        merchant_profile: str,
        kind: str,
        payload: dict[str, Any] | None,
        requested_by: str,
        traceparent: str | None = None,
    ) -> None:
        """Queue a command and notify the relays (delivered at commit), in one round trip."""
        await self._execute(
            "WITH queued AS (INSERT INTO operations "
            "(id, invoice_id, merchant_profile, kind, payload, requested_by, traceparent) "
            "VALUES (:id, :invoice_id, :profile, :kind, CAST(:payload AS jsonb), :by, :trace) "
            "RETURNING id) SELECT pg_notify(:channel, id::text) FROM queued",
            trace=traceparent,
            id=operation_id,
            invoice_id=invoice_id,
            profile=merchant_profile,
            kind=kind,
            payload=None if payload is None else to_json(payload),
            by=requested_by,
            channel=OUTBOX_CHANNEL,
        )

    async def state(self, operation_id: uuid.UUID) -> str | None:
        found = await self._scalar("SELECT state FROM operations WHERE id = :id", id=operation_id)
        return None if found is None else str(found)

    async def depth(self) -> tuple[dict[str, int], float]:
        """Commands per state, and the age in seconds of the oldest unfinished one (0 when none)."""
        rows = await self._all("SELECT state, count(*) AS n FROM operations GROUP BY state")
        age = await self._scalar(
            "SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM operations "
            "WHERE state IN ('pending', 'in_flight')"
        )
        return {str(row["state"]): int(row["n"]) for row in rows}, float(age or 0)

    async def get(self, operation_id: uuid.UUID) -> OperationRow | None:
        return await self._row(
            OperationRow, _OPERATION_WITH_INVOICE + "WHERE o.id = :id", id=operation_id
        )

    async def has_unfinished(self, invoice_id: int) -> bool:
        found = await self._one(
            "SELECT 1 FROM operations WHERE invoice_id = :id "
            "AND state IN ('pending', 'in_flight') LIMIT 1",
            id=invoice_id,
        )
        return found is not None

    async def list_by_seq(
        self,
        *,
        state: str | None,
        after_seq: int | None,
        limit: int,
        profiles: frozenset[str] | None = None,
    ) -> list[OperationRow]:
        clauses: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        if profiles is not None:
            clauses.append("o.merchant_profile = ANY(:profiles)")
            params["profiles"] = sorted(profiles)
        if state is not None:
            clauses.append("o.state = :state")
            params["state"] = state
        if after_seq is not None:
            clauses.append("o.seq > :after")
            params["after"] = after_seq
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return await self._rows(
            OperationRow, _OPERATION_WITH_INVOICE + f"{where} ORDER BY o.seq LIMIT :limit", **params
        )

    async def claim_due(
        self, *, owner: str, limit: int, lease_seconds: float
    ) -> list[ClaimedOperation]:
        """Claim due commands under a lease; a command waits while an older one of its invoice is
        unfinished.

        SKIP LOCKED lets several relays claim side by side; an expired lease (a crashed relay) makes
        an in-flight command claimable again.
        """
        return await self._rows(
            ClaimedOperation,
            """
            WITH due AS (
                SELECT o.id FROM operations o
                WHERE ((o.state = 'pending' AND o.available_at <= now())
                       OR (o.state = 'in_flight' AND o.lease_expires_at < now()))
                  AND NOT EXISTS (SELECT 1 FROM operations p WHERE p.invoice_id = o.invoice_id
                                  AND p.seq < o.seq AND p.state IN ('pending', 'in_flight'))
                ORDER BY o.available_at, o.seq
                LIMIT :limit
                FOR UPDATE OF o SKIP LOCKED
            )
            UPDATE operations o SET state = 'in_flight', lease_owner = :owner,
                   lease_expires_at = now() + make_interval(secs => :lease), \
attempts = o.attempts + 1,
                   -- a command taken over from an expired lease may have reached Cybersource: \
look first
                   needs_reconcile = o.needs_reconcile OR o.state = 'in_flight', updated_at = now()
            FROM due, invoices i
            WHERE o.id = due.id AND i.id = o.invoice_id
            RETURNING o.id, o.invoice_id, o.merchant_profile, o.kind, o.payload, o.attempts, \
o.created_at,
                      o.needs_reconcile, o.failure_counts, o.baseline, i.invoice_number,
                      o.traceparent
            """,
            owner=owner,
            limit=limit,
            lease=lease_seconds,
        )

    async def set_baseline(
        self, operation_id: uuid.UUID, owner: str, baseline: dict[str, Any]
    ) -> None:
        await self._execute(
            "UPDATE operations SET baseline = CAST(:b AS jsonb) WHERE id = :id "
            "AND lease_owner = :owner",
            id=operation_id,
            owner=owner,
            b=to_json(baseline),
        )

    async def renew(
        self, owner: str, operation_ids: Sequence[uuid.UUID], lease_seconds: float
    ) -> set[uuid.UUID]:
        """Extend the leases `owner` still holds (the heartbeat and the fence); returns those it
        holds."""
        if not operation_ids:
            return set()
        rows = await self._all(
            "UPDATE operations SET lease_expires_at = now() + make_interval(secs => :lease) "
            "WHERE id = ANY(CAST(:ids AS uuid[])) AND lease_owner = :owner AND state = 'in_flight' "
            "RETURNING id",
            ids=[str(operation_id) for operation_id in operation_ids],
            owner=owner,
            lease=lease_seconds,
        )
        return {row["id"] for row in rows}

    async def reschedule(self, owner: str, batch: Sequence[Reschedule]) -> set[uuid.UUID]:
        """Put commands back for a later attempt, set-based; counts each one's failure class.

        Fenced like `finish`: a command another relay took over is left alone.
        """
        if not batch:
            return set()
        items = [
            {
                "id": str(r.job_id),
                "delay": r.delay_seconds,
                "error": r.error,
                "reconcile": r.reconcile,
                "class": r.failure_class,
            }
            for r in batch
        ]
        rows = await self._all(
            """
            UPDATE operations o SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                   available_at = now() + make_interval(secs => x.delay), last_error = x.error,
                   needs_reconcile = COALESCE(x.reconcile, o.needs_reconcile),
                   failure_counts = o.failure_counts || jsonb_build_object(
                       x.class, COALESCE((o.failure_counts ->> x.class)::int, 0) + 1),
                   updated_at = now()
            FROM jsonb_to_recordset(CAST(:items AS jsonb))
                 AS x(id uuid, delay float8, error jsonb, reconcile boolean, class text)
            WHERE o.id = x.id AND o.lease_owner = :owner AND o.state = 'in_flight'
            RETURNING o.id
            """,
            items=to_json(items),
            owner=owner,
        )
        return {row["id"] for row in rows}

    async def finish(self, owner: str, batch: Sequence[Finish]) -> set[uuid.UUID]:
        """Finish a batch of commands set-based, in one statement; returns the ids actually
        finished.

        Only commands still leased by `owner` are finished (a relay whose lease expired is fenced
        off).
        """
        if not batch:
            return set()
        items = [
            {"id": str(f.operation_id), "state": f.state, "result": f.result, "error": f.error}
            for f in batch
        ]
        rows = await self._all(
            """
            UPDATE operations o SET state = x.state, result = x.result, last_error = x.error,
                   lease_owner = NULL, lease_expires_at = NULL, completed_at = now(), \
updated_at = now()
            FROM jsonb_to_recordset(CAST(:items AS jsonb)) AS x(id uuid, state text, result jsonb, \
error jsonb)
            WHERE o.id = x.id AND o.lease_owner = :owner AND o.state = 'in_flight'
            RETURNING o.id
            """,
            items=to_json(items),
            owner=owner,
        )
        return {row["id"] for row in rows}

    async def notify_finished(self, operation_ids: Sequence[uuid.UUID]) -> None:
        """Wake the requests waiting for these commands (delivered at commit)."""
        await self._execute(
            "SELECT pg_notify(:c, x) FROM unnest(CAST(:ids AS text[])) AS x",
            c=OPERATION_DONE_CHANNEL,
            ids=[str(operation_id) for operation_id in operation_ids],
        )

    async def release(self, owner: str) -> int:
        """Give back what a stopping relay holds, so another relay can take it at once.

        What is still held was cut off mid-delivery (its call may have reached Cybersource): the
        next relay reconciles before re-sending, as after an expired lease.
        """
        rows = await self._all(
            "UPDATE operations SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, "
            "attempts = GREATEST(attempts - 1, 0), needs_reconcile = true, updated_at = now() "
            "WHERE lease_owner = :owner AND state = 'in_flight' RETURNING id",
            owner=owner,
        )
        return len(rows)

    async def requeue_failed(self, operation_id: uuid.UUID) -> bool:
        """Put a command that failed for good (or whose outcome is unknown) back in the queue, and
        wake the relays. An unknown one keeps `needs_reconcile`: it is read before anything is sent
        again."""
        row = await self._one(
            "UPDATE operations SET state = 'pending', attempts = 0, failure_counts = '{}'::jsonb, "
            "available_at = now(), completed_at = NULL, result = NULL, created_at = now(), "
            "updated_at = now() "
            "WHERE id = :id AND state IN ('failed', 'unknown') RETURNING id",
            id=operation_id,
        )
        if row is None:
            return False
        await self._execute("SELECT pg_notify(:c, :p)", c=OUTBOX_CHANNEL, p=str(operation_id))
        return True
