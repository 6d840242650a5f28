"""The purge of old webhook receipts: a background job of the worker process."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.observability.logging import get_logger
from app.settings import Settings
from app.upstream_sync.repository import UpstreamSyncRepository

log = get_logger(__name__)


async def purge_receipts_once(engine: AsyncEngine, settings: Settings) -> bool:
    """Delete one small batch of receipts past WEBHOOK_RECEIPT_RETENTION_HOURS; True when a full
    batch went, so more may be waiting."""
    async with engine.begin() as conn:
        purged = await UpstreamSyncRepository(conn).purge_webhook_receipts(
            older_than_hours=settings.webhook_receipt_retention_hours,
            batch=settings.idempotency_purge_batch,
        )
    if purged:
        log.info("webhooks.receipts_purged", count=purged)
    return purged >= settings.idempotency_purge_batch
