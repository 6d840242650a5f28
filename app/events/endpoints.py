"""/v1/events: invoice lifecycle events in commit order."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app import errors
from app.http.deps import Reader
from app.http.problems import problem_responses
from app.invoices.presenters import decode_cursor, encode_cursor, event_out
from app.invoices.repository import Repository
from app.invoices.schemas import EventPage

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.get("", response_model=EventPage, responses=problem_responses(400, 401, 403, 422),
            summary="Invoice lifecycle events after a cursor, in commit order")
async def list_events(request: Request, caller: Reader,
                      after: Annotated[str | None, Query(max_length=200)] = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100) -> EventPage:
    position = None
    if after is not None:
        txid, event_id = decode_cursor(after, 2)
        if not (txid.isdigit() and event_id.isdigit()):
            raise errors.MalformedRequest("The cursor is not one this API handed out.")
        position = (int(txid), int(event_id))
    owner = None if caller.is_admin else caller.client
    async with request.app.state.reads.connect() as conn:
        rows = await Repository(conn).list_events(after=position, owner=owner, limit=limit)
    cursor = encode_cursor(rows[-1]["txid"], rows[-1]["id"]) if rows else after
    return EventPage(items=[event_out(r) for r in rows], nextCursor=cursor)
