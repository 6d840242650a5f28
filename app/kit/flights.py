"""Single flight: concurrent calls for the same key share one execution and its result.

Forty `?refresh=true` of one invoice make one Cybersource call and one write; every caller gets the
result (or the error) of that one call. A waiter that goes away (its client hung up) does not cancel
the call the others wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SingleFlight(Generic[V]):
    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[V]] = {}
        self.started = 0  # executions begun (tests and metrics read it)

    def in_flight(self, key: Hashable) -> bool:
        return key in self._flights

    async def run(self, key: Hashable, work: Callable[[], Awaitable[V]]) -> V:
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self.started += 1
            self._flights[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(task)

    def _landed(self, key: Hashable, task: asyncio.Task[V]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a flight whose waiters all left logs no warning
