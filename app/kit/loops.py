"""The resilient background loop every job of the worker runs in (relay claims, reconciler,
purge)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from app.db import database_unavailable
from app.observability.logging import get_logger

log = get_logger(__name__)


async def wait_for_any(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> None:
    """Sleep up to `seconds`, or less when `stop` (or `wake`) is set."""
    events = [stop] if wake is None else [stop, wake]
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters, return_exceptions=True)


async def run_until_stopped(
    name: str,
    step: Callable[[], Awaitable[bool]],
    stop: asyncio.Event,
    *,
    idle_seconds: float,
    wake: asyncio.Event | None = None,
) -> None:
    """Call `step` until `stop` is set; it returns True when more work may be waiting right away.

    A failing step (the database away for a moment, a bug) is logged and retried after the idle
    pause, never allowed to end the loop: a background job that silently died would look healthy.
    A bug is logged with its traceback; the database being away is one warning line per pause.
    """
    while not stop.is_set():
        try:
            busy = await step()
        except Exception as exc:
            if database_unavailable(exc):
                # Expected during an outage, once per pause: one line, not a traceback each time.
                log.warning(f"{name}.database_unavailable", error=type(exc).__name__)
            else:
                log.exception(f"{name}.failed")
            busy = False
        if busy:
            await asyncio.sleep(0)  # let the rest of the process run between full batches
            continue
        if wake is not None:
            wake.clear()
        await wait_for_any(stop, wake, idle_seconds)
