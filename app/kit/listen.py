"""A LISTEN connection that comes back after the database went away (restart, failover, a killed
backend).

One dedicated asyncpg connection listens on one channel. When it is lost (asyncpg's termination
callback, or a failed liveness check for a connection that died silently), it is opened again with
capped exponential backoff; after a reconnect `on_reconnect` runs, since notifications sent
meanwhile are gone (callers poll once). `status` is what `/readyz` reports: `listening`,
`reconnecting`, or `off` when the process was told not to listen (no DSN).

A lost LISTEN connection usually means every connection to the database was lost (a restart, a
failover): `on_lost` runs then, so the process can retire its pooled connections instead of failing
one request on a dead one once the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg

from app.observability.logging import get_logger

log = get_logger(__name__)
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 5.0
# A connection whose server died without closing the socket shows nothing until it is used.
CHECK_INTERVAL_SECONDS = 10.0
CHECK_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 10.0


class Listener:
    def __init__(
        self,
        dsn: str | None,
        channel: str,
        on_notify: Callable[[str], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        name: str = "listener",
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self.name = name
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._on_lost = on_lost
        self._connection: Any = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ever_connected = False

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    @property
    def status(self) -> str:
        if self.dsn is None:
            return "off"
        return "listening" if self.listening else "reconnecting"

    async def start(self) -> None:
        """Connect once (so a process starts listening when the database is up), then keep it so."""
        if self.dsn is None:
            return
        await self._connect()
        self._task = asyncio.create_task(self._keep_listening())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)

    def _terminated(self, _conn: Any) -> None:
        self._lost.set()

    async def _connect(self) -> bool:
        assert self.dsn is not None
        try:
            connection = await asyncpg.connect(
                self.dsn,
                timeout=CONNECT_TIMEOUT_SECONDS,
                server_settings={"application_name": f"igw-listen:{self.channel}"},
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning(f"{self.name}.listen_unavailable", error=type(exc).__name__)
            return False
        try:
            connection.add_termination_listener(self._terminated)
            await connection.add_listener(self.channel, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning(f"{self.name}.listen_unavailable", error=type(exc).__name__)
            connection.terminate()
            return False
        self._lost.clear()
        self._connection = connection
        if self._ever_connected:
            log.info(f"{self.name}.listen_restored", channel=self.channel)
            if self._on_reconnect is not None:
                self._on_reconnect()
        self._ever_connected = True
        return True

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CHECK_TIMEOUT_SECONDS)
            if not connection.is_closed():
                connection.terminate()

    async def _alive(self) -> bool:
        try:
            await asyncio.wait_for(self._connection.fetchval("SELECT 1"), CHECK_TIMEOUT_SECONDS)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False
        return True

    async def _keep_listening(self) -> None:
        delay = BACKOFF_FIRST_SECONDS
        while True:
            if not self.listening:
                await self._drop()
                if not await self._connect():
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_CAP_SECONDS)
                    continue
                delay = BACKOFF_FIRST_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), CHECK_INTERVAL_SECONDS)
            if self.listening and not self._lost.is_set() and await self._alive():
                continue
            log.warning(f"{self.name}.listen_lost", channel=self.channel)
            if self._on_lost is not None:
                self._on_lost()
            await self._drop()
