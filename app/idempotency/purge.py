"""The purge of old idempotency records: a background job of the worker process."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.idempotency.repository import IdempotencyRepository
from app.observability.logging import get_logger
from app.settings import Settings

log = get_logger(__name__)


async def purge_once(engine: AsyncEngine, settings: Settings) -> bool:
    """Delete one small batch (short locks); True when a full batch went, so more may be waiting."""
    async with engine.begin() as conn:
        purged = await IdempotencyRepository(conn).purge(
            older_than_hours=settings.idempotency_retention_hours,
            batch=settings.idempotency_purge_batch,
        )
    if purged:
        log.info("idempotency.purged", count=purged)
    return purged > 0
