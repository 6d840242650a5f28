"""`invoicing-gateway operations`: operators see and re-drive outbox commands from a shell.

The same actions as `GET /v1/operations?state=failed` and `POST /v1/operations/{id}/retry`, for when the
API is not the tool at hand (a runbook, a job in the cluster).
"""

from __future__ import annotations

import uuid

from app.db import create_engine
from app.errors import ApiError
from app.invoices.presenters import operation_out
from app.invoices.repository import Repository
from app.invoices.service import requeue_failed_operation
from app.settings import Settings


async def list_operations(settings: Settings, *, state: str | None, limit: int) -> list[str]:
    """One JSON document per command, oldest first."""
    engine = create_engine(settings.database_url, pgbouncer=settings.database_pgbouncer, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await Repository(conn).list_operations(state=state, after_seq=None, limit=limit)
    finally:
        await engine.dispose()
    return [operation_out(row).model_dump_json() for row in rows]


async def retry_operation(settings: Settings, operation_id: uuid.UUID) -> tuple[bool, str]:
    """Put a failed command back in the queue; (done, what to print)."""
    engine = create_engine(settings.database_url, pgbouncer=settings.database_pgbouncer, pool_size=1)
    try:
        async with engine.begin() as conn:
            row = await requeue_failed_operation(Repository(conn), operation_id)
    except ApiError as exc:
        return False, exc.detail
    finally:
        await engine.dispose()
    return True, operation_out(row).model_dump_json()
