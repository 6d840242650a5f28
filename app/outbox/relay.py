"""The generic outbox relay: deliver committed commands exactly once, in order per invoice, with any
handler.

- Claim: due commands under a lease (`FOR UPDATE SKIP LOCKED`), never two of one invoice at a time;
  a crashed relay's lease expires and another relay takes its commands over. While the relay holds
  work a heartbeat renews its leases, and the handler fences every upstream action on the lease
  (`lease.py`).
- Deliver: a bounded number of deliveries in flight, each by the handler, which says what happened:
  succeeded, failed for good, superseded (made moot by later work), or try again (with the failure
  class, its attempt limit, Retry-After, and whether the call may have been applied so the next
  attempt must reconcile first).
- Retry: the `RetryPolicy` spaces the attempts and decides when to give up. Attempts are counted per
  failure class too, so a class with a limit of its own counts only its own failures. Work whose
  outcome is not known (the call may have been applied and no reading has told) is never declared
  failed: it is checked again with backoff until the age limit, and then left `unknown` for
  operators.
- Finish: outcomes (and retries) are written in batches, one statement per table, fenced on the
  lease; the handler writes its own effects (invoice columns, events) in the same transaction. While
  the database is away they wait in memory, written with backoff once it answers again.
- Wake-ups: LISTEN on the queue's channel (reconnected after the database went away), with polling
  as the fallback; on stop, no more claims, calls in flight finish (bounded), and whatever is still
  held is released.

The relay knows nothing of what it delivers: a `Queue` is the table of work (claim, reschedule,
finish, release, fenced on the lease), a `Handler` does one delivery. `app/outbox/repository.py` is
the queue of invoice commands and `app/invoices/delivery.py` the handler that takes them to
Cybersource.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db import database_unavailable, retire_pooled_connections
from app.kit.listen import Listener
from app.kit.loops import run_until_stopped
from app.observability.logging import get_logger
from app.observability.metrics import RELAY_DELIVERIES
from app.outbox.lease import Lease, LeaseLost, Leases
from app.outbox.repository import Finish, Reschedule
from app.outbox.retry import RetryPolicy
from app.settings import Settings

log = get_logger(__name__)
SHUTDOWN_GRACE_SECONDS = 20.0
# At stop, how long the relay keeps trying to write what it holds while the database does not
# answer.
SHUTDOWN_WRITE_SECONDS = 10.0
FLUSH_INTERVAL_SECONDS = 0.01
FLUSH_BACKOFF_CAP_SECONDS = 2.0

Effects = TypeVar("Effects")


class Claimed(Protocol):
    """What the relay itself needs of a claimed piece of work."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def kind(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def needs_reconcile(self) -> bool: ...
    @property
    def failure_counts(self) -> dict[str, int]: ...


Job = TypeVar("Job", bound=Claimed)


@dataclass(frozen=True, slots=True)
class Succeeded(Generic[Effects]):
    result: dict[str, Any]
    effects: Effects


@dataclass(frozen=True, slots=True)
class Failed(Generic[Effects]):
    """Failed for good (a refusal): no retry will change the answer."""

    error: dict[str, Any]
    effects: Effects


@dataclass(frozen=True, slots=True)
class Superseded(Generic[Effects]):
    """Refused because later work made it moot (a send that a cancel overtook): final, not a
    failure."""

    error: dict[str, Any]
    effects: Effects


@dataclass(frozen=True, slots=True)
class TryAgain:
    error: dict[str, Any]
    # A metrics label, the key of its attempt counter, and the dead letter's `kind` when it has a
    # limit.
    failure_class: str
    attempt_limit: int | None = (
        None  # a class that rarely heals gives up after this many of its own
    )
    retry_after: float | None = None
    # Whether the work may have been done: True (the next attempt checks first), False (known not
    # done), None (this attempt learned nothing new: it stays as it was).
    reconcile: bool | None = None
    message: str = ""


Delivery = Succeeded[Effects] | Failed[Effects] | Superseded[Effects] | TryAgain


@dataclass(frozen=True, slots=True)
class Done(Generic[Job, Effects]):
    """A finished piece of work and its handler's effects, waiting to be written with the next
    batch."""

    operation: Job
    finish: Finish
    effects: Effects


class Queue(Protocol[Job]):
    """A table of work, built from a connection; every change is fenced on the lease owner."""

    async def claim_due(self, *, owner: str, limit: int, lease_seconds: float) -> list[Job]: ...

    async def renew(
        self, owner: str, job_ids: Sequence[uuid.UUID], lease_seconds: float
    ) -> set[uuid.UUID]: ...

    async def reschedule(self, owner: str, batch: Sequence[Reschedule]) -> set[uuid.UUID]: ...

    async def finish(self, owner: str, batch: Sequence[Finish]) -> set[uuid.UUID]: ...

    async def notify_finished(self, job_ids: Sequence[uuid.UUID]) -> None: ...

    async def release(self, owner: str) -> int: ...


class Handler(Protocol[Job, Effects]):
    """What a kind of outbox work does: deliver one piece, then record its effects at finish.

    `deliver` calls `await lease.fence()` right before each upstream action.
    """

    async def deliver(self, operation: Job, lease: Lease) -> Delivery[Effects]: ...

    def failure_effects(self, operation: Job, error: dict[str, Any]) -> Effects: ...

    async def record(self, conn: AsyncConnection, done: Sequence[Done[Job, Effects]]) -> None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """One relay's budget: deliveries in flight, claims per poll, lease and poll interval."""

    concurrency: int
    batch_size: int
    lease_seconds: float
    poll_interval_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            concurrency=settings.relay_concurrency,
            batch_size=settings.relay_batch_size,
            lease_seconds=settings.relay_lease_seconds,
            poll_interval_seconds=settings.relay_poll_interval_seconds,
        )


class Relay(Generic[Job, Effects]):
    def __init__(
        self,
        engine: AsyncEngine,
        queue: Callable[[AsyncConnection], Queue[Job]],
        handler: Handler[Job, Effects],
        *,
        retry: RetryPolicy,
        limits: Limits,
        channel: str,
        owner: str | None = None,
        listen_dsn: str | None = None,
        name: str = "relay",
    ) -> None:
        self.engine = engine
        self.queue = queue
        self.handler = handler
        self.retry = retry
        self.limits = limits
        self.channel = channel
        self.name = name
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.listen_dsn = listen_dsn
        self.leases = Leases(self.owner, limits.lease_seconds, self._renew, name=name)
        self._wake = asyncio.Event()
        self.listener = Listener(
            listen_dsn,
            channel,
            lambda _payload: self._wake.set(),
            on_reconnect=self._wake.set,  # what was queued while it was away: claim it now
            on_lost=partial(retire_pooled_connections, engine),
            name=name,
        )
        self._done: list[Done[Job, Effects]] = []
        self._rescheduled: list[Reschedule] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    # --- lifecycle --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.listener.start()
        flusher = asyncio.create_task(self._flush_loop())
        heartbeat = asyncio.create_task(self.leases.run())
        log.info(
            "relay.started", relay=self.name, owner=self.owner, concurrency=self.limits.concurrency
        )
        try:
            await run_until_stopped(
                f"{self.name}.claim",
                self._claim_and_dispatch,
                stop,
                idle_seconds=self.limits.poll_interval_seconds,
                wake=self._wake,
            )
        finally:
            await self._shutdown(flusher, heartbeat)

    async def _shutdown(self, flusher: asyncio.Task[None], heartbeat: asyncio.Task[None]) -> None:
        # The heartbeat goes on meanwhile: calls finishing in the grace keep their leases.
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        released = await self._write_and_release()
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        await self.listener.stop()
        log.info("relay.stopped", relay=self.name, owner=self.owner, released=released)

    async def _write_and_release(self) -> int | None:
        """Write what is finished and give back the rest; retried while the database is away
        (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_WRITE_SECONDS
        delay = 0.1
        while True:
            try:
                await self._flush()
                async with self.engine.begin() as conn:
                    return await self.queue(conn).release(self.owner)
            except Exception as exc:
                if loop.time() > deadline:
                    # The leases run out by themselves; whoever takes the work over checks first.
                    log.warning(
                        "relay.stop_unwritten",
                        relay=self.name,
                        pending=len(self._done) + len(self._rescheduled),
                        error=type(exc).__name__,
                    )
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, FLUSH_BACKOFF_CAP_SECONDS)

    async def _renew(self, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        async with self.engine.begin() as conn:
            return await self.queue(conn).renew(self.owner, job_ids, self.limits.lease_seconds)

    # --- claiming ---------------------------------------------------------------------------------

    async def _claim_and_dispatch(self) -> bool:
        """Claim what fits in the free slots; True when there may be more to claim right away."""
        free = self.limits.concurrency - len(self._in_flight)
        if free <= 0:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            return True
        claimed_at = asyncio.get_running_loop().time()
        async with self.engine.begin() as conn:
            claimed = await self.queue(conn).claim_due(
                owner=self.owner,
                limit=min(free, self.limits.batch_size),
                lease_seconds=self.limits.lease_seconds,
            )
        for operation in claimed:
            lease = self.leases.hold(operation.id, claimed_at, operation.attempts)
            task = asyncio.create_task(self._deliver(operation, lease))
            self.leases.attach(operation.id, task)
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return bool(claimed)

    # --- delivering -------------------------------------------------------------------------------

    async def _deliver(self, operation: Job, lease: Lease) -> None:
        try:
            delivery = await self.handler.deliver(operation, lease)
        except LeaseLost:
            # Another relay holds it now (or may at any moment): its outcome is that relay's to
            # write.
            RELAY_DELIVERIES.labels(operation.kind, "lease_lost").inc()
            self.leases.forget(operation.id, lease.token)
            return
        except (
            Exception
        ) as exc:  # a bug must not kill the relay or lose the command: back off, keep it
            if database_unavailable(exc):  # its own writes (a baseline) met an outage: no bug
                log.warning(
                    "relay.database_unavailable",
                    operation_id=str(operation.id),
                    error=type(exc).__name__,
                )
                message = "the database was unavailable while delivering"
            else:
                log.exception("relay.unexpected_error", operation_id=str(operation.id))
                message = "internal error while delivering"
            error = {"kind": "transient", "status": None, "message": message}
            delivery = TryAgain(error, "transient", message=message)
        self.leases.delivered(lease)
        match delivery:
            case Succeeded(result=result, effects=effects):
                self._complete(
                    Done(operation, Finish(operation.id, "succeeded", result, None), effects)
                )
            case Failed(error=error, effects=effects):
                self._complete(
                    Done(operation, Finish(operation.id, "failed", None, error), effects)
                )
            case Superseded(error=error, effects=effects):
                self._complete(
                    Done(operation, Finish(operation.id, "superseded", None, error), effects)
                )
            case TryAgain():
                self._retry_or_give_up(operation, delivery)

    def _complete(self, done: Done[Job, Effects]) -> None:
        RELAY_DELIVERIES.labels(done.operation.kind, done.finish.state).inc()
        if done.finish.state in ("failed", "unknown"):
            error = done.finish.error or {}
            log.warning(
                f"relay.command_{done.finish.state}",
                operation_id=str(done.operation.id),
                kind=done.operation.kind,
                error_kind=error.get("kind"),
                reason=error.get("reason"),
                status=error.get("status"),
            )
        self._done.append(done)

    def _retry_or_give_up(self, operation: Job, again: TryAgain) -> None:
        age = (datetime.now(UTC) - operation.created_at).total_seconds()
        outcome_known = not (
            operation.needs_reconcile if again.reconcile is None else again.reconcile
        )
        class_attempts = operation.failure_counts.get(again.failure_class, 0) + 1
        if self.retry.gives_up(
            attempts=operation.attempts,
            class_attempts=class_attempts,
            age_seconds=age,
            class_limit=again.attempt_limit,
            outcome_known=outcome_known,
        ):
            self._give_up(operation, again, outcome_known, class_attempts)
            return
        delay = self.retry.delay(operation.attempts, again.retry_after)
        RELAY_DELIVERIES.labels(operation.kind, f"retry_{again.failure_class}").inc()
        log.info(
            "relay.retry_scheduled",
            operation_id=str(operation.id),
            error_kind=again.failure_class,
            attempts=operation.attempts,
            class_attempts=class_attempts,
            delay_s=round(delay, 3),
        )
        self._rescheduled.append(
            Reschedule(operation.id, delay, again.error, again.reconcile, again.failure_class)
        )

    def _give_up(
        self, operation: Job, again: TryAgain, outcome_known: bool, class_attempts: int
    ) -> None:
        if not outcome_known:
            # It may have been applied and nothing could tell: not a failure, a question for
            # operators.
            state, kind = "unknown", "unknown"
            message = (
                f"outcome unknown after {operation.attempts} attempts: the call may have been "
                f"applied and no check could tell ({again.message})"
            )
        else:
            state = "failed"
            kind = again.failure_class if again.attempt_limit is not None else "exhausted"
            count = class_attempts if again.attempt_limit is not None else operation.attempts
            message = f"gave up after {count} attempts: {again.message}"
        error = {**again.error, "kind": kind, "message": message}
        effects = self.handler.failure_effects(operation, error)
        self._complete(Done(operation, Finish(operation.id, state, None, error), effects))

    # --- writing outcomes, in batches -------------------------------------------------------------

    async def _flush(self) -> None:
        batch, self._done = self._done, []
        retries, self._rescheduled = self._rescheduled, []
        if not batch and not retries:
            return
        try:
            async with self.engine.begin() as conn:
                await self._write(conn, batch, retries)
        except BaseException:
            # Keep them: the next flush writes them; if this relay dies, the leases expire and the
            # commands are reconciled by whoever takes them over. Also when cancelled mid-write (the
            # flusher at shutdown): the final flush must still see them.
            self._done[:0] = batch
            self._rescheduled[:0] = retries
            raise
        for job_id in [done.operation.id for done in batch] + [r.job_id for r in retries]:
            self.leases.forget(job_id)

    async def _write(
        self, conn: AsyncConnection, batch: list[Done[Job, Effects]], retries: list[Reschedule]
    ) -> None:
        queue = self.queue(conn)
        if retries:
            await queue.reschedule(self.owner, retries)
        if not batch:
            return
        finished = await queue.finish(self.owner, [done.finish for done in batch])
        # Only what this relay still leased: one taken over by another relay is that relay's to
        # record.
        mine = [done for done in batch if done.operation.id in finished]
        if mine:
            await self.handler.record(conn, mine)
            await queue.notify_finished([done.operation.id for done in mine])

    async def _flush_loop(self) -> None:
        """Write outcomes every few milliseconds; while the database is away, back off and log
        once."""
        loop = asyncio.get_running_loop()
        delay = FLUSH_INTERVAL_SECONDS
        failing_since: float | None = None
        while True:
            await asyncio.sleep(delay)
            try:
                await self._flush()
            except Exception as exc:
                if failing_since is None:
                    failing_since = loop.time()
                    log.warning(
                        "relay.flush_failed",
                        relay=self.name,
                        pending=len(self._done) + len(self._rescheduled),
                        error=type(exc).__name__,
                        exc_info=not database_unavailable(exc),
                    )
                delay = min(max(delay * 2, 0.05), FLUSH_BACKOFF_CAP_SECONDS)
                continue
            if failing_since is not None:
                log.info(
                    "relay.flush_restored",
                    relay=self.name,
                    after_s=round(loop.time() - failing_since, 2),
                )
                failing_since = None
            delay = FLUSH_INTERVAL_SECONDS
