"""The generic outbox relay: deliver committed commands exactly once, in order per invoice, with any handler.

- Claim: due commands under a lease (`FOR UPDATE SKIP LOCKED`), never two of one invoice at a time;
  a crashed relay's lease expires and another relay takes its commands over.
- Deliver: a bounded number of deliveries in flight, each by the handler, which says what happened:
  succeeded, failed for good, or try again (with the failure class, its attempt limit, Retry-After, and
  whether the call may have been applied so the next attempt must reconcile first).
- Retry: the `RetryPolicy` spaces the attempts and decides when to give up (dead letter: state failed).
- Finish: outcomes are written in batches, one statement per table, fenced on the lease; the handler
  writes its own effects (invoice columns, events) in the same transaction.
- Wake-ups: LISTEN on the queue's channel, with polling as the fallback; on stop, no more claims, calls in
  flight finish (bounded), and whatever is still held is released.

The relay knows nothing of what it delivers: a `Queue` is the table of work (claim, reschedule, finish,
release, fenced on the lease), a `Handler` does one delivery. `app/outbox/repository.py` is the queue of
invoice commands and `app/invoices/delivery.py` the handler that takes them to Cybersource.
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
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.kit.loops import run_until_stopped
from app.observability.logging import get_logger
from app.observability.metrics import RELAY_DELIVERIES
from app.outbox.repository import Finish
from app.outbox.retry import RetryPolicy
from app.settings import Settings

log = get_logger(__name__)
SHUTDOWN_GRACE_SECONDS = 20.0
FLUSH_INTERVAL_SECONDS = 0.01

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
class TryAgain:
    error: dict[str, Any]
    failure_class: (
        str  # a metrics label and the dead letter's `kind`: transient, ambiguous, authentication
    )
    attempt_limit: int | None = None  # a class that rarely heals may give up sooner
    retry_after: float | None = None
    reconcile: bool = False  # the call may have been applied: the next attempt checks first
    message: str = ""


Delivery = Succeeded[Effects] | Failed[Effects] | TryAgain


@dataclass(frozen=True, slots=True)
class Done(Generic[Job, Effects]):
    """A finished piece of work and its handler's effects, waiting to be written with the next batch."""

    operation: Job
    finish: Finish
    effects: Effects


class Queue(Protocol[Job]):
    """A table of work, built from a connection; every change is fenced on the lease owner."""

    async def claim_due(self, *, owner: str, limit: int, lease_seconds: float) -> list[Job]: ...

    async def reschedule(
        self,
        job_id: uuid.UUID,
        *,
        owner: str,
        delay_seconds: float,
        error: dict[str, Any],
        needs_reconcile: bool,
    ) -> bool: ...

    async def finish(self, owner: str, batch: Sequence[Finish]) -> set[uuid.UUID]: ...

    async def notify_finished(self, job_ids: Sequence[uuid.UUID]) -> None: ...

    async def release(self, owner: str) -> int: ...


class Handler(Protocol[Job, Effects]):
    """What a kind of outbox work does: deliver one piece, then record its effects at finish."""

    async def deliver(self, operation: Job, lease_owner: str) -> Delivery[Effects]: ...

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
        self._wake = asyncio.Event()
        self._done: list[Done[Job, Effects]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._listener: Any = None

    # --- lifecycle ----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self._listen()
        flusher = asyncio.create_task(self._flush_loop())
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
            await self._shutdown(flusher)

    async def _shutdown(self, flusher: asyncio.Task[None]) -> None:
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in self._in_flight:
            task.cancel()
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await self._flush()
        async with self.engine.begin() as conn:
            released = await self.queue(conn).release(self.owner)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        log.info("relay.stopped", relay=self.name, owner=self.owner, released=released)

    async def _listen(self) -> None:
        if self.listen_dsn is None:
            return
        try:
            self._listener = await asyncpg.connect(self.listen_dsn)
            await self._listener.add_listener(self.channel, lambda *_: self._wake.set())
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("relay.listen_unavailable", error=str(exc))
            self._listener = None

    # --- claiming -----------------------------------------------------------------------------------

    async def _claim_and_dispatch(self) -> bool:
        """Claim what fits in the free slots; True when there may be more to claim right away."""
        free = self.limits.concurrency - len(self._in_flight)
        if free <= 0:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            return True
        async with self.engine.begin() as conn:
            claimed = await self.queue(conn).claim_due(
                owner=self.owner,
                limit=min(free, self.limits.batch_size),
                lease_seconds=self.limits.lease_seconds,
            )
        for operation in claimed:
            task = asyncio.create_task(self._deliver(operation))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return bool(claimed)

    # --- delivering ---------------------------------------------------------------------------------

    async def _deliver(self, operation: Job) -> None:
        try:
            delivery = await self.handler.deliver(operation, self.owner)
        except Exception:  # a bug must not kill the relay or lose the command: back off and keep it
            log.exception("relay.unexpected_error", operation_id=str(operation.id))
            error = {
                "kind": "transient",
                "status": None,
                "message": "internal error while delivering",
            }
            delivery = TryAgain(error, "transient", message="internal error while delivering")
        match delivery:
            case Succeeded(result=result, effects=effects):
                self._complete(
                    Done(operation, Finish(operation.id, "succeeded", result, None), effects)
                )
            case Failed(error=error, effects=effects):
                self._complete(
                    Done(operation, Finish(operation.id, "failed", None, error), effects)
                )
            case TryAgain():
                await self._retry_or_give_up(operation, delivery)

    def _complete(self, done: Done[Job, Effects]) -> None:
        RELAY_DELIVERIES.labels(done.operation.kind, done.finish.state).inc()
        if done.finish.state == "failed":
            error = done.finish.error or {}
            log.warning(
                "relay.command_failed",
                operation_id=str(done.operation.id),
                kind=done.operation.kind,
                error_kind=error.get("kind"),
                reason=error.get("reason"),
                status=error.get("status"),
            )
        self._done.append(done)

    async def _retry_or_give_up(self, operation: Job, again: TryAgain) -> None:
        age = (datetime.now(UTC) - operation.created_at).total_seconds()
        if self.retry.gives_up(operation.attempts, age, limit=again.attempt_limit):
            kind = again.failure_class if again.failure_class == "authentication" else "exhausted"
            error = {
                **again.error,
                "kind": kind,
                "message": f"gave up after {operation.attempts} attempts: {again.message}",
            }
            effects = self.handler.failure_effects(operation, error)
            self._complete(Done(operation, Finish(operation.id, "failed", None, error), effects))
            return
        delay = self.retry.delay(operation.attempts, again.retry_after)
        RELAY_DELIVERIES.labels(operation.kind, f"retry_{again.failure_class}").inc()
        log.info(
            "relay.retry_scheduled",
            operation_id=str(operation.id),
            error_kind=again.failure_class,
            attempts=operation.attempts,
            delay_s=round(delay, 3),
        )
        async with self.engine.begin() as conn:
            await self.queue(conn).reschedule(
                operation.id,
                owner=self.owner,
                delay_seconds=delay,
                error=again.error,
                needs_reconcile=again.reconcile,
            )

    # --- finishing, in batches ----------------------------------------------------------------------

    async def _flush(self) -> None:
        batch, self._done = self._done, []
        if not batch:
            return
        try:
            async with self.engine.begin() as conn:
                await self._write(conn, batch)
        except BaseException as exc:
            # Keep them: the next flush writes them; if this relay dies, the leases expire and the
            # commands are reconciled by whoever takes them over. Also when cancelled mid-write (the
            # flusher at shutdown): the final flush must still see them.
            if isinstance(exc, Exception):
                log.exception("relay.flush_failed", count=len(batch))
            self._done[:0] = batch
            raise

    async def _write(self, conn: AsyncConnection, batch: list[Done[Job, Effects]]) -> None:
        outbox = self.queue(conn)
        finished = await outbox.finish(self.owner, [done.finish for done in batch])
        # Only what this relay still leased: one taken over by another relay is that relay's to record.
        mine = [done for done in batch if done.operation.id in finished]
        if mine:
            await self.handler.record(conn, mine)
            await outbox.notify_finished([done.operation.id for done in mine])

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            with contextlib.suppress(Exception):
                await self._flush()
