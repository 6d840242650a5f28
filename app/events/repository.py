"""The events table: lifecycle events written with the change they describe, read in commit
order."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.kit.sql import BaseRepository, to_json


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    txid: int
    type: str
    invoice_number: str | None
    merchant_profile: str
    owner: str
    operation_id: uuid.UUID | None
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write for an invoice (its number, profile and owner are copied from the invoice
    row), or about no invoice (`invoice_id` None: `owner` and `merchant_profile` say who may read
    it)."""

    type: str
    invoice_id: int | None
    operation_id: uuid.UUID | None
    data: dict[str, Any]
    owner: str | None = None
    merchant_profile: str | None = None


# The newest transaction id below which every row is committed or will never be (the feed's
# visibility rule, also the push relay's): below the oldest transaction of this database still in
# progress, as the statement's snapshot sees it. A CTE named `cutoff` with one column `txid`.
COMMITTED_CUTOFF_CTES = """
    snap AS (SELECT pg_current_snapshot() AS s),
    elsewhere AS (
        SELECT backend_xid::text::bigint AS xid32 FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
    ),
    cutoff AS (
        SELECT COALESCE(
            (SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x
             WHERE x::text::bigint % 4294967296 NOT IN (SELECT xid32 FROM elsewhere)),
            (SELECT pg_snapshot_xmax(s)::text::bigint FROM snap)) AS txid
    )
"""
PUSH_CHANNEL = "igw_push"


class EventRepository(BaseRepository):
    async def insert(self, events: Sequence[NewEvent]) -> None:
        """Write a batch of events, and a push delivery for every enabled subscription that may read
        each, in one statement (so in the change's transaction: never "publish after commit");
        relays that push are woken at commit."""
        if not events:
            return
        items = [
            {
                "n": n,
                "type": e.type,
                "invoice_id": e.invoice_id,
                "op": e.operation_id,
                "data": e.data,
                "owner": e.owner,
                "profile": e.merchant_profile,
            }
            for n, e in enumerate(events)
        ]
        await self._execute(
            """
            WITH x AS (
                SELECT * FROM jsonb_to_recordset(CAST(:items AS jsonb))
                AS x(n int, type text, invoice_id bigint, op uuid, data jsonb, \
owner text, profile text)
            ),
            written AS (
                INSERT INTO events (type, invoice_id, invoice_number, merchant_profile, owner, \
operation_id, data)
                SELECT x.type, i.id, i.invoice_number, COALESCE(i.merchant_profile, x.profile),
                       COALESCE(i.owner, x.owner), x.op,
                       -- the caller's own reference and metadata ride along (README "References")
                       x.data || jsonb_strip_nulls(jsonb_build_object(
                           'externalReference', i.external_reference,
                           'metadata', NULLIF(i.metadata, CAST('{}' AS jsonb))))
                FROM x LEFT JOIN invoices i ON i.id = x.invoice_id
                WHERE i.id IS NOT NULL OR (x.invoice_id IS NULL AND x.owner IS NOT NULL)
                ORDER BY x.n
                RETURNING id, type, owner, merchant_profile
            ),
            queued AS (
                -- What the feed would show the subscription's creator: its own \
invoices unless admin,
                -- its merchant profiles only.
                INSERT INTO subscription_deliveries (subscription_id, kind, event_id)
                SELECT s.id, 'event', e.id FROM written e
                JOIN subscriptions s ON s.enabled
                     AND (cardinality(s.event_types) = 0 OR e.type = ANY(s.event_types))
                     AND (s.sees_all_owners OR s.owner = e.owner)
                     AND e.merchant_profile = ANY(s.profiles)
                ORDER BY e.id, s.seq
                RETURNING 1
            )
            SELECT pg_notify(:channel, '') FROM (SELECT 1 FROM queued LIMIT 1) AS any_queued
            """,
            items=to_json(items),
            channel=PUSH_CHANNEL,
        )

    async def list_after(
        self,
        *,
        after: tuple[int, int] | None,
        owner: str | None,
        limit: int,
        profiles: frozenset[str] | None = None,
    ) -> list[EventRow]:
        """Events in commit order, never skipping a row that commits late.

        Ids are handed out before commit, so a reader must not move past a transaction that is still
        running: rows are shown only below the oldest in-progress transaction id of the statement's
        snapshot. Transactions known to run in another database cannot write our events and do not
        hold the feed back; anything unknown (including one that just finished) does, for one poll.
        """
        clauses = ["e.txid < cutoff.txid"]
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            clauses.append("(e.txid, e.id) > (:after_tx, :after_id)")
            params.update(after_tx=after[0], after_id=after[1])
        if owner is not None:
            clauses.append("e.owner = :owner")
            params["owner"] = owner
        if profiles is not None:
            clauses.append("e.merchant_profile = ANY(:profiles)")
            params["profiles"] = sorted(profiles)
        return await self._rows(
            EventRow,
            f"""
            WITH {COMMITTED_CUTOFF_CTES}
            SELECT e.* FROM events e, cutoff
            WHERE {" AND ".join(clauses)}
            ORDER BY e.txid, e.id LIMIT :limit
            """,  # noqa: S608  (clauses are fixed text; values are bound)
            **params,
        )
