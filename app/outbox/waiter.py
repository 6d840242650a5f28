"""Wait for outbox commands to finish: LISTEN on the completion channel, polling as a fallback.

One dedicated connection per API process listens (`app/kit/listen.py`: reconnected with backoff
after the database went away); each waiting request gets a future. Polling covers a lost
notification, the time the listener is reconnecting, and a database where LISTEN is unavailable
(PgBouncer in transaction mode).
A poll that fails (the database is away) counts as "not finished yet": the request's own deadline
decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import database_unavailable, retire_pooled_connections
from app.kit.listen import Listener
from app.observability.logging import get_logger
from app.outbox.repository import FINAL_STATES, OPERATION_DONE_CHANNEL, OutboxRepository

log = get_logger(__name__)
# With LISTEN a poll only guards against a lost notification; without it, polling is the mechanism.
POLL_WITH_LISTEN_SECONDS = 2.0
POLL_WITHOUT_LISTEN_SECONDS = 0.1


class OperationWaiter:
    def __init__(self, engine: AsyncEngine, listen_dsn: str | None) -> None:
        self.engine = engine
        self.listen_dsn = listen_dsn
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.listener = Listener(
            listen_dsn,
            OPERATION_DONE_CHANNEL,
            self._on_notify,
            # Notifications sent while it was away are lost: every waiting request looks again.
            on_reconnect=self._wake_all,
            on_lost=partial(retire_pooled_connections, engine),
            name="operation_waiter",
        )

    async def start(self) -> None:
        await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()

    def _on_notify(self, payload: str) -> None:
        for future in self._waiters.pop(payload, set()):
            if not future.done():
                future.set_result(None)

    def _wake_all(self) -> None:
        for key in list(self._waiters):
            self._on_notify(key)

    async def _finished(self, operation_id: uuid.UUID) -> bool:
        try:
            async with self.engine.connect() as conn:
                state = await OutboxRepository(conn).state(operation_id)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            return False  # the database is away: the command cannot finish meanwhile either
        return state is None or state in FINAL_STATES

    async def wait(self, operation_id: uuid.UUID, seconds: float) -> bool:
        """True when the command finished within `seconds`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        key = str(operation_id)
        while True:
            interval = (
                POLL_WITH_LISTEN_SECONDS if self.listener.listening else POLL_WITHOUT_LISTEN_SECONDS
            )
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
