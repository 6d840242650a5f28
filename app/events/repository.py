"""The events table: lifecycle events written with the change they describe, read in commit order."""

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
    invoice_number: str
    merchant_profile: str
    owner: str
    operation_id: uuid.UUID | None
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write for an invoice (its number, profile and owner are copied from the invoice row)."""

    type: str
    invoice_id: int
    operation_id: uuid.UUID | None
    data: dict[str, Any]


class EventRepository(BaseRepository):
    async def insert(self, events: Sequence[NewEvent]) -> None:
        """Write a batch of events in one statement."""
        if not events:
            return
        items = [
            {"type": e.type, "invoice_id": e.invoice_id, "op": e.operation_id, "data": e.data}
            for e in events
        ]
        await self._execute(
            """
            INSERT INTO events (type, invoice_id, invoice_number, merchant_profile, owner, operation_id, data)
            SELECT x.type, i.id, i.invoice_number, i.merchant_profile, i.owner, x.op, x.data
            FROM jsonb_to_recordset(CAST(:items AS jsonb)) AS x(type text, invoice_id bigint, op uuid, data jsonb)
            JOIN invoices i ON i.id = x.invoice_id
            """,
            items=to_json(items),
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
        snapshot. Transactions known to run in another database cannot write our events and do not hold
        the feed back; anything unknown (including one that just finished) does, for one poll.
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
            WITH snap AS (SELECT pg_current_snapshot() AS s),
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
            SELECT e.* FROM events e, cutoff
            WHERE {" AND ".join(clauses)}
            ORDER BY e.txid, e.id LIMIT :limit
            """,  # noqa: S608  (clauses are fixed text; values are bound)
            **params,
        )
