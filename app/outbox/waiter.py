"""Wait for outbox commands to finish: LISTEN on the completion channel, polling as a fallback.

One dedicated connection per API process listens; each waiting request gets a future. Polling covers
a lost notification or a database where LISTEN is unavailable (PgBouncer in transaction mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.observability.logging import get_logger
from app.outbox.repository import OPERATION_DONE_CHANNEL, OutboxRepository

log = get_logger(__name__)
# With LISTEN a poll only guards against a lost notification; without it, polling is the mechanism.
POLL_WITH_LISTEN_SECONDS = 2.0
POLL_WITHOUT_LISTEN_SECONDS = 0.1


class OperationWaiter:
    def __init__(self, engine: AsyncEngine, listen_dsn: str | None) -> None:
        self.engine = engine
        self.listen_dsn = listen_dsn
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._connection: Any = None

    async def start(self) -> None:
        if self.listen_dsn is None:
            return
        try:
            self._connection = await asyncpg.connect(self.listen_dsn)
            await self._connection.add_listener(OPERATION_DONE_CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("operation_waiter.listen_unavailable", error=str(exc))
            self._connection = None

    async def stop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        for future in self._waiters.pop(payload, set()):
            if not future.done():
                future.set_result(None)

    async def _finished(self, operation_id: uuid.UUID) -> bool:
        async with self.engine.connect() as conn:
            state = await OutboxRepository(conn).state(operation_id)
        return state in (None, "succeeded", "failed")

    async def wait(self, operation_id: uuid.UUID, seconds: float) -> bool:
        """True when the command finished within `seconds`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        key = str(operation_id)
        interval = (
            POLL_WITH_LISTEN_SECONDS
            if self._connection is not None
            else POLL_WITHOUT_LISTEN_SECONDS
        )
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(key, set()).add(future)
            try:
                if await self._finished(operation_id):
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, min(remaining, interval))
            finally:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.discard(future)
                    if not waiting:
                        self._waiters.pop(key, None)
