"""The outbox relay: deliver committed commands to Cybersource exactly once, in order per invoice.

- Claim: due commands under a lease (`FOR UPDATE SKIP LOCKED`), never two of one invoice at a time;
  a crashed relay's lease expires and another relay takes its commands over.
- Deliver: a bounded number of calls in flight. Transient failures back off (capped exponential with
  jitter, at least Retry-After). Ambiguous failures (the call may have been applied) are reconciled
  before anything is re-sent: a create is looked up by its number, a send/publish/cancel compares the
  upstream status and e-mail history with what it was before the first attempt.
- Finish: completions are written in batches, one statement per table; failures past the attempt or
  age limit are dead-lettered (state failed) with the error on the invoice and an `invoice.failed` event.
- Alongside: the status reconciler (app/status_reconciler.py) and the purge of old idempotency records.
- Wake-ups: LISTEN on the outbox channel, with polling as the fallback; SIGTERM stops claiming, lets
  calls in flight finish (bounded), and releases whatever is still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from prometheus_client import start_http_server
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cybersource.client import CybersourceClient, CybersourceClients
from app.cybersource.errors import (
    AmbiguousError,
    AuthenticationError,
    CybersourceError,
    RejectedError,
    TransientError,
)
from app.db import create_engine, plain_url
from app.invoices.repository import OUTBOX_CHANNEL, Completion, Repository
from app.invoices.upstream_state import COMMAND_EVENTS, UpstreamState
from app.observability.logging import get_logger
from app.observability.metrics import RELAY_DELIVERIES
from app.settings import Settings
from app.upstream_sync.reconciler import StatusReconciler

log = get_logger(__name__)
SHUTDOWN_GRACE_SECONDS = 20.0
FLUSH_INTERVAL_SECONDS = 0.01


def error_record(exc: CybersourceError, kind: str) -> dict[str, Any]:
    record: dict[str, Any] = {"kind": kind, "status": exc.status, "message": exc.message,
                              "correlationId": exc.correlation_id}
    if isinstance(exc, RejectedError):
        record.update(reason=exc.reason, details=[
            {"field": d.get("field"), "reason": d.get("reason"), "message": d.get("message")}
            for d in exc.details if isinstance(d, dict)])
    return record


class Relay:
    def __init__(self, engine: AsyncEngine, settings: Settings, clients: CybersourceClients,
                 owner: str | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.clients = clients
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._completions: list[Completion] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._listener: Any = None

    # --- lifecycle ----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self._listen()
        flusher = asyncio.create_task(self._flush_loop(stop))
        # Side jobs: purging idempotency records, and re-reading open invoices (an invoice the reconciler held
        # at shutdown is simply checked again later).
        side_jobs = [asyncio.create_task(self._housekeeping_loop(stop)),
                     asyncio.create_task(StatusReconciler(self.engine, self.settings, self.clients).run(stop))]
        log.info("relay.started", owner=self.owner, concurrency=self.settings.relay_concurrency)
        try:
            while not stop.is_set():
                try:
                    claimed = await self._claim_and_dispatch()
                except Exception:  # the database is away for a moment: keep running, try again
                    log.exception("relay.claim_failed")
                    claimed = 0
                if claimed == 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wait_wake_or_stop(stop),
                                               self.settings.relay_poll_interval_seconds)
        finally:
            await self._shutdown(flusher, side_jobs)

    async def _wait_wake_or_stop(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _shutdown(self, flusher: asyncio.Task[None], side_jobs: list[asyncio.Task[None]]) -> None:
        for job in side_jobs:
            job.cancel()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in self._in_flight:
            task.cancel()
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await self._flush()
        async with self.engine.begin() as conn:
            released = await Repository(conn).release_leases(self.owner)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        log.info("relay.stopped", owner=self.owner, released=released)

    async def _listen(self) -> None:
        if not self.settings.relay_listen:
            return
        dsn = plain_url(self.settings.database_listen_url or self.settings.database_url)
        try:
            self._listener = await asyncpg.connect(dsn)
            await self._listener.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("relay.listen_unavailable", error=str(exc))
            self._listener = None

    # --- claiming -----------------------------------------------------------------------------------

    async def _claim_and_dispatch(self) -> int:
        free = self.settings.relay_concurrency - len(self._in_flight)
        if free <= 0:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            return 1
        async with self.engine.begin() as conn:
            rows = await Repository(conn).claim_due_operations(
                owner=self.owner, limit=min(free, self.settings.relay_batch_size),
                lease_seconds=self.settings.relay_lease_seconds)
        for row in rows:
            task = asyncio.create_task(self._deliver(row))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(rows)

    # --- delivering ---------------------------------------------------------------------------------

    async def _deliver(self, op: RowMapping) -> None:
        try:
            client = self.clients.get(op["merchant_profile"])
            body = await self._deliver_once(client, op)
            self._complete_success(op, body)
        except RejectedError as exc:
            self._complete_failure(op, error_record(exc, "rejected"))
        except AuthenticationError as exc:
            await self._retry_or_fail(op, exc, "authentication", limit=self.settings.relay_account_error_attempts)
        except AmbiguousError as exc:
            await self._retry_or_fail(op, exc, "ambiguous", reconcile=True)
        except TransientError as exc:
            limit = (self.settings.relay_account_error_attempts
                     if getattr(exc, "possibly_account_problem", False) else None)
            await self._retry_or_fail(op, exc, "transient", limit=limit, retry_after=exc.retry_after)
        except CybersourceError as exc:
            await self._retry_or_fail(op, exc, "transient")
        except Exception:  # a bug must not kill the relay or lose the command: back off and keep it
            log.exception("relay.unexpected_error", operation_id=str(op["id"]))
            await self._retry_or_fail(op, CybersourceError("internal error while delivering"), "transient")

    async def _deliver_once(self, client: CybersourceClient, op: RowMapping) -> dict[str, Any]:
        kind, number = op["kind"], op["invoice_number"]
        if op["needs_reconcile"]:
            applied = await self._reconcile(client, op)
            if applied is not None:
                log.info("relay.reconciled_as_applied", operation_id=str(op["id"]), kind=kind)
                return applied
        if kind == "send" and op["baseline"] is None:
            await self._record_send_baseline(client, op)
        try:
            if kind == "create":
                result = await client.create_invoice(op["payload"])
            elif kind == "update":
                result = await client.update_invoice(number, op["payload"])
            elif kind == "publish":
                result = await client.publish_invoice(number)
            elif kind == "send":
                result = await client.send_invoice(number)
            else:
                result = await client.cancel_invoice(number)
        except RejectedError as exc:
            if kind == "create" and exc.is_duplicate_record:
                # A create we sent before (answer lost) or someone else's invoice: look before failing.
                existing = await self._fetch(client, number)
                if existing is not None and UpstreamState.from_body(existing).matches_request(op["payload"]):
                    return existing
            raise
        return dict(result.raw)

    async def _fetch(self, client: CybersourceClient, number: str) -> dict[str, Any] | None:
        try:
            return dict((await client.get_invoice(number)).raw)
        except RejectedError as exc:
            if exc.is_not_found:
                return None
            raise

    async def _record_send_baseline(self, client: CybersourceClient, op: RowMapping) -> None:
        """Before the first send, note status and e-mail count so a lost answer can be told apart."""
        current = await self._fetch(client, op["invoice_number"])
        state = UpstreamState.from_body(current)
        baseline = {"status": state.status, "sends": state.send_count}
        async with self.engine.begin() as conn:
            await Repository(conn).set_baseline(op["id"], self.owner, baseline)

    async def _reconcile(self, client: CybersourceClient, op: RowMapping) -> dict[str, Any] | None:
        """After an ambiguous failure: the upstream invoice if the command was applied, else None."""
        kind = op["kind"]
        if kind == "update":
            return None  # a full replacement is safe to apply again
        current = await self._fetch(client, op["invoice_number"])
        if current is None:
            return None
        state = UpstreamState.from_body(current)
        if kind == "create":
            return current if state.matches_request(op["payload"]) else None
        if kind == "publish":
            return current if state.status not in (None, "DRAFT") else None
        if kind == "cancel":
            return current if state.status == "CANCELED" else None
        baseline = op["baseline"]
        if baseline is None:
            return None  # the baseline is committed before the first send call: none means never sent
        applied = state.status != baseline.get("status") or state.send_count > int(baseline.get("sends", 0))
        return current if applied else None

    # --- outcomes -----------------------------------------------------------------------------------

    def _complete_success(self, op: RowMapping, body: dict[str, Any]) -> None:
        RELAY_DELIVERIES.labels(op["kind"], "succeeded").inc()
        state = UpstreamState.from_body(body)
        self._completions.append(Completion(
            operation_id=op["id"], invoice_id=op["invoice_id"], state="succeeded",
            result={"status": state.status, "completedAt": datetime.now(UTC).isoformat()}, error=None,
            status=state.status, payment_link=state.payment_link, balance_amount=state.balance_amount,
            upstream=body, event_type=COMMAND_EVENTS[op["kind"]],
            event_data={"status": state.status, "operation": op["kind"]}))

    def _complete_failure(self, op: RowMapping, error: dict[str, Any]) -> None:
        RELAY_DELIVERIES.labels(op["kind"], "failed").inc()
        log.warning("relay.command_failed", operation_id=str(op["id"]), kind=op["kind"],
                    error_kind=error.get("kind"), reason=error.get("reason"), status=error.get("status"))
        self._completions.append(Completion(
            operation_id=op["id"], invoice_id=op["invoice_id"], state="failed", result=None, error=error,
            event_type="invoice.failed", event_data={"operation": op["kind"], "error": error}))

    def backoff_seconds(self, attempts: int, retry_after: float | None) -> float:
        capped = min(self.settings.relay_backoff_cap_seconds,
                     self.settings.relay_backoff_base_seconds * 2 ** max(attempts - 1, 0))
        delay: float = capped * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not security)
        return max(delay, float(retry_after or 0.0))

    async def _retry_or_fail(self, op: RowMapping, exc: CybersourceError, kind: str, *, limit: int | None = None,
                             retry_after: float | None = None, reconcile: bool = False) -> None:
        error = error_record(exc, kind)
        attempts = int(op["attempts"])
        age = (datetime.now(UTC) - op["created_at"]).total_seconds()
        max_attempts = min(limit or self.settings.relay_max_attempts, self.settings.relay_max_attempts)
        if attempts >= max_attempts or age >= self.settings.relay_max_age_seconds:
            self._complete_failure(op, {**error, "kind": "exhausted" if kind != "authentication" else kind,
                                        "message": f"gave up after {attempts} attempts: {exc.message}"})
            return
        delay = self.backoff_seconds(attempts, retry_after)
        RELAY_DELIVERIES.labels(op["kind"], f"retry_{kind}").inc()
        log.info("relay.retry_scheduled", operation_id=str(op["id"]), error_kind=kind, attempts=attempts,
                 delay_s=round(delay, 3))
        async with self.engine.begin() as conn:
            await Repository(conn).reschedule_operation(op["id"], owner=self.owner, delay_seconds=delay,
                                                        error=error, needs_reconcile=reconcile)

    # --- batching and housekeeping ------------------------------------------------------------------

    async def _flush(self) -> None:
        batch, self._completions = self._completions, []
        if not batch:
            return
        try:
            async with self.engine.begin() as conn:
                await Repository(conn).complete_operations(self.owner, batch)
        except BaseException as exc:
            # Keep them: the next flush writes them; if this relay dies, the leases expire and the
            # commands are reconciled by whoever takes them over. Also when cancelled mid-write (the
            # flusher at shutdown): the final flush must still see them.
            if isinstance(exc, Exception):
                log.exception("relay.flush_failed", count=len(batch))
            self._completions[:0] = batch
            raise

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            with contextlib.suppress(Exception):
                await self._flush()

    async def _housekeeping_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with self.engine.begin() as conn:
                    purged = await Repository(conn).purge_idempotency_records(
                        older_than_hours=self.settings.idempotency_retention_hours,
                        batch=self.settings.idempotency_purge_batch)
                if purged:
                    log.info("relay.idempotency_purged", count=purged)
                    continue  # more may be waiting; small batches keep locks short
            except Exception:
                log.exception("relay.housekeeping_failed")
            await asyncio.sleep(self.settings.housekeeping_interval_seconds)


async def run_relay(settings: Settings) -> None:
    """`invoicing-gateway relay`: run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = create_engine(settings.database_url, pgbouncer=settings.database_pgbouncer,
                           pool_size=settings.database_pool_size,
                           pool_timeout=settings.database_pool_timeout_seconds)
    clients = CybersourceClients.from_settings(settings)
    if settings.relay_metrics_port:
        # The standalone relay has no HTTP API: its counters get a small scrape endpoint of their own.
        start_http_server(settings.relay_metrics_port, addr=settings.relay_metrics_host)
    try:
        await Relay(engine, settings, clients).run(stop)
    finally:
        await clients.aclose()
        await engine.dispose()
