"""Leases on claimed work: renewed by a heartbeat while the relay holds the work, fenced before each
action.

A relay claims work under a lease of `lease_seconds`. As long as it holds a piece of work
(delivering it, or keeping its result until the database takes it), a heartbeat renews all its
leases in one statement every third of the lease, so a lease can be short (a dead relay's work moves
to another in seconds) and a slow delivery still keeps it. When the heartbeat finds a lease gone
(another relay holds the work now), or cannot reach the database while most of a lease has run out,
the delivery is cancelled: from then on another relay may take the work over, and two relays must
never act on one piece of work at once.

`Lease.fence()` is what a handler calls right before every upstream action: a lease renewed within
the last third of its length is still safely held; an older one is renewed in the database first,
and `LeaseLost` is raised when it is gone (the process stalled, the database was away, another relay
took it).
Each claim has a token (the work's attempt number): when a relay claims again work whose earlier
delivery it still runs (that delivery stalled past its lease), the earlier delivery is cancelled and
its fence fails, so not even one relay acts twice on the same work.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from app.observability.logging import get_logger

log = get_logger(__name__)

Renew = Callable[[Sequence[uuid.UUID]], Awaitable[set[uuid.UUID]]]


class LeaseLost(Exception):
    """The relay no longer holds this work: it must not act on it (another relay may)."""


@dataclass(slots=True)
class _Held:
    renewed_at: float  # loop time when the statement that (re)set the lease was sent
    token: int  # which claim of the work this is (its attempt number)
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """One piece of work as its handler sees the relay's hold on it."""

    job_id: uuid.UUID
    owner: str
    token: int
    leases: Leases

    async def fence(self) -> None:
        """Make sure the lease is held, right before an upstream action; raises `LeaseLost`."""
        await self.leases.fence(self.job_id, self.token)


class Leases:
    """The leases one relay holds, their heartbeat, and the fence."""

    def __init__(self, owner: str, lease_seconds: float, renew: Renew, *, name: str) -> None:
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.interval = lease_seconds / 3
        self._renew = renew
        self._name = name
        self._held: dict[uuid.UUID, _Held] = {}
        self._failing = False

    def hold(self, job_id: uuid.UUID, claimed_at: float, token: int) -> Lease:
        if job_id in self._held:  # claimed again: the earlier delivery outlived its lease
            self._lose(job_id, cancel=True)
        self._held[job_id] = _Held(claimed_at, token)
        return Lease(job_id, self.owner, token, self)

    def attach(self, job_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        held = self._held.get(job_id)
        if held is not None:
            held.task = task

    def delivered(self, lease: Lease) -> None:
        """The delivery ended; its outcome waits to be written, so the lease is still renewed."""
        held = self._held.get(lease.job_id)
        if held is not None and held.token == lease.token:
            held.task = None

    def forget(self, job_id: uuid.UUID, token: int | None = None) -> None:
        """Written, released or lost: no longer renewed (`token`: only if it is still that
        claim)."""
        held = self._held.get(job_id)
        if held is not None and (token is None or held.token == token):
            del self._held[job_id]

    def holds(self, job_id: uuid.UUID) -> bool:
        return job_id in self._held

    @property
    def count(self) -> int:
        return len(self._held)

    async def fence(self, job_id: uuid.UUID, token: int) -> None:
        held = self._held.get(job_id)
        if held is None or held.token != token:
            raise LeaseLost(f"{job_id} is no longer held by {self.owner}")
        loop = asyncio.get_running_loop()
        if loop.time() - held.renewed_at < self.interval:
            return
        started = loop.time()
        if job_id not in await self._renew([job_id]):
            self._lose(job_id, cancel=False)
            raise LeaseLost(f"the lease on {job_id} was taken over")
        held.renewed_at = started

    async def beat(self) -> None:
        """Renew every lease held, in one statement; cancel the deliveries whose lease cannot be
        kept."""
        ids = list(self._held)
        if not ids:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            renewed = await self._renew(ids)
        except Exception as exc:  # the database is away: keep going while the leases last
            if not self._failing:
                log.warning(f"{self._name}.heartbeat_failed", error=type(exc).__name__)
            self._failing = True
            for job_id in ids:
                held = self._held.get(job_id)
                # Cut the call off before the lease runs out: past it another relay may take the
                # work.
                if held is not None and started - held.renewed_at > self.lease_seconds * 0.75:
                    self._lose(job_id, cancel=True)
            return
        if self._failing:
            log.info(f"{self._name}.heartbeat_restored", held=len(ids))
        self._failing = False
        for job_id in ids:
            held = self._held.get(job_id)
            if held is None:
                continue
            if job_id in renewed:
                held.renewed_at = max(held.renewed_at, started)
            else:
                self._lose(job_id, cancel=True)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.beat()

    def _lose(self, job_id: uuid.UUID, *, cancel: bool) -> None:
        held = self._held.pop(job_id, None)
        if held is None:
            return
        log.warning(f"{self._name}.lease_lost", operation_id=str(job_id), owner=self.owner)
        if cancel and held.task is not None and not held.task.done():
            held.task.cancel()
