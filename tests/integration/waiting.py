"""Shared waiting and fault helpers for the integration tests: poll with a deadline (a sleep is
never the assertion), and count how often a simulator fault rule matched."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import httpx

T = TypeVar("T")


async def until(
    probe: Callable[[], Awaitable[T] | T],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `probe` (plain or async) until it returns something truthy; fail after `timeout`
    seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what} (last: {result!r})"
            )
        await asyncio.sleep(interval)


async def add_fault(sim: httpx.AsyncClient, **rule: Any) -> str:
    """Add a simulator fault rule; returns its id."""
    rule.setdefault("id", f"fault-{uuid.uuid4().hex[:8]}")
    response = await sim.post("/__sim/faults", json=rule)
    assert response.status_code == 201, response.text
    return str(rule["id"])


async def fault_hits(sim: httpx.AsyncClient, rule_id: str) -> int:
    rules = (await sim.get("/__sim/faults")).json()
    return next(r["hits"] for r in rules if r["id"] == rule_id)


async def waiting_for_a_lock(database_url: str) -> bool:
    """Does a session of this database wait for a lock? (Asked outside any transaction:
    pg_stat_activity is read once per transaction, then cached.)"""
    conn = await asyncpg.connect(database_url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    finally:
        await conn.close()
