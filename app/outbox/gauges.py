"""The outbox's depth for Prometheus, read from the database at scrape time."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from app.models import OPERATION_STATES
from app.observability.metrics import OUTBOX_COMMANDS, OUTBOX_OLDEST_PENDING
from app.outbox.repository import OutboxRepository


async def refresh_outbox_gauges(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        by_state, oldest_age = await OutboxRepository(conn).depth()
    for state in OPERATION_STATES:
        OUTBOX_COMMANDS.labels(state).set(by_state.get(state, 0))
    OUTBOX_OLDEST_PENDING.set(oldest_age)


async def metrics_text(reads: AsyncEngine) -> Response:
    """The Prometheus exposition, with the outbox gauges read now."""
    await refresh_outbox_gauges(reads)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
