"""/v1/events: invoice lifecycle events in commit order."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.auth.dependencies import Reader
from app.events.schemas import EventPage
from app.events.service import EventService
from app.http.deps import provide
from app.http.problems import problem_responses

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.get(
    "",
    response_model=EventPage,
    responses=problem_responses(400, 401, 403, 422),
    summary="Invoice lifecycle events after a cursor, in commit order",
)
async def list_events(
    caller: Reader,
    service: Annotated[EventService, Depends(provide(EventService))],
    after: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    return await service.page(caller, after=after, limit=limit)
