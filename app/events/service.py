"""The events feed: lifecycle events after a position, in commit order, limited to what the caller
may see."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.principal import Caller
from app.events.repository import EventRepository, EventRow
from app.events.schemas import EventOut, EventPage
from app.events.types import EventType
from app.kit.cursors import decode_ids, encode_cursor


def event_out(row: EventRow) -> EventOut:
    return EventOut(
        id=row.id,
        type=EventType(row.type),
        invoiceNumber=row.invoice_number,
        merchantProfile=row.merchant_profile,
        operationId=None if row.operation_id is None else str(row.operation_id),
        data=row.data,
        createdAt=row.created_at,
    )


class EventService:
    def __init__(self, *, reads: AsyncEngine) -> None:
        self.reads = reads

    async def page(self, caller: Caller, *, after: str | None, limit: int) -> EventPage:
        position = None
        if after is not None:
            txid, event_id = decode_ids(after, 2)
            position = (txid, event_id)
        async with self.reads.connect() as conn:
            rows = await EventRepository(conn).list_after(
                after=position, owner=caller.owner_filter(), profiles=caller.profiles, limit=limit
            )
        cursor = encode_cursor(rows[-1].txid, rows[-1].id) if rows else after
        return EventPage(items=[event_out(row) for row in rows], nextCursor=cursor)
