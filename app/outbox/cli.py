"""`invoicing-gateway operations`: operators see and re-drive outbox commands from a shell.

The same actions as `GET /v1/operations?state=failed` and `POST /v1/operations/{id}/retry`, for when
the API is not the tool at hand (a runbook, a job in the cluster).
"""

from __future__ import annotations

import uuid

from app.db import engine_from_settings
from app.errors import ApiError
from app.outbox.presenters import operation_out
from app.outbox.service import list_operations as page_of_operations
from app.outbox.service import requeue_failed
from app.settings import Settings


async def list_operations(settings: Settings, *, state: str | None, limit: int) -> list[str]:
    """One JSON document per command, oldest first."""
    engine = engine_from_settings(settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            page = await page_of_operations(conn, state=state, after=None, limit=limit)
    finally:
        await engine.dispose()
    return [item.model_dump_json() for item in page.items]


async def retry_operation(settings: Settings, operation_id: uuid.UUID) -> tuple[bool, str]:
    """Put a failed command back in the queue; (done, what to print)."""
    engine = engine_from_settings(settings, pool_size=1)
    try:
        async with engine.begin() as conn:
            row = await requeue_failed(conn, operation_id)
    except ApiError as exc:
        return False, exc.detail
    finally:
        await engine.dispose()
    return True, operation_out(row).model_dump_json()
