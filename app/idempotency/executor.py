"""Idempotency keys on every mutating call: run a request's writes once per key, replay its answer
after.

The key is claimed in the same transaction as the invoice row and the outbox command, so a crash
before commit leaves nothing behind (the retry runs again) and a crash after commit leaves a record
that points at its command (the retry gets that command's answer). Rules:

- same client + key + same request (fingerprint) -> the first answer, replayed with
  `Idempotent-Replayed`;
- same key, different request -> 422; first request still running -> 409 with Retry-After, or a
  bounded wait when the caller sent `Prefer: wait=N`;
- requests refused before anything was written (validation, state) keep no record: a retry
  re-checks;
- the record follows its command: an answer stored for a command an operator re-drives is dropped in
  the re-drive's transaction (`IdempotencyRepository.follow_again`), so the key then answers what
  the command does next, never the outcome it had before;
- once the command is committed, a failure to read its outcome (the database went away) is a
  503 that says so: the request was accepted and the same key gets its answer; never "nothing was
  applied". A connection lost while committing is a 503 that says it may or may not have been
  applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app import errors
from app.auth.principal import Caller
from app.db import database_unavailable
from app.idempotency.repository import IdempotencyRecord, IdempotencyRepository
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class Accepted:
    """A command committed to the outbox; the answer comes when it finishes (or 202)."""

    operation_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Outcome:
    """A complete HTTP answer: what a request returns and what its idempotency key replays."""

    status: int
    body: Any
    headers: dict[str, str]


class CommandAnswers(Protocol):
    """How a command's answer reads as it stands (the invoices feature provides it)."""

    async def __call__(
        self, conn: AsyncConnection, operation_id: uuid.UUID, *, accepted: bool
    ) -> Outcome: ...


class CommandWaiter(Protocol):
    async def wait(self, operation_id: uuid.UUID, seconds: float) -> bool: ...


Enqueue = Callable[[AsyncConnection], Awaitable[Accepted | Outcome]]


class KeyedRequest(Protocol):
    """What the executor needs of a mutating request (app/http/mutations.Mutation has it)."""

    @property
    def key(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...

    def fingerprint(self, body: object, *, scope: str = "") -> str: ...


class IdempotentExecutor:
    def __init__(
        self,
        engine: AsyncEngine,
        reads: AsyncEngine,
        settings: Settings,
        waiter: CommandWaiter,
        answers: CommandAnswers,
    ) -> None:
        self.engine = engine
        self.reads = reads  # autocommit: the replay check is one statement, no transaction
        self.settings = settings
        self.waiter = waiter
        self.answers = answers

    async def _final_outcome(
        self,
        caller: Caller,
        key: str,
        operation_id: uuid.UUID,
        wait_seconds: float,
        *,
        store_accepted: bool,
    ) -> Outcome:
        """Wait (bounded) for the command, then store its answer under the key, in one transaction.

        A 202 is stored only by the request that answers it (`store_accepted`); a retry that finds
        the command still running stores nothing and answers 409 instead. A first request with no
        wait (`Prefer: respond-async`, or `REQUEST_WAIT_SECONDS=0`) always answers 202.
        """
        if wait_seconds > 0:
            await self.waiter.wait(operation_id, wait_seconds)
        async with self.engine.begin() as conn:
            # A first request that asked not to wait answers 202 even when a fast relay already
            # finished.
            outcome = await self.answers(
                conn, operation_id, accepted=store_accepted and wait_seconds <= 0
            )
            if store_accepted or outcome.status != 202:
                await IdempotencyRepository(conn).complete(
                    caller.client,
                    key,
                    status=outcome.status,
                    headers=outcome.headers,
                    body=outcome.body,
                )
        return outcome

    async def run_request(
        self,
        caller: Caller,
        request: KeyedRequest,
        meaning: object,
        enqueue: Enqueue,
        *,
        scope: str = "",
        wait_seconds: float = 0.0,
        replay_wait_seconds: float = 0.0,
    ) -> tuple[Outcome, bool]:
        """`run` for a parsed request: its key, method and path, fingerprinted on `meaning` +
        `scope`."""
        return await self.run(
            caller=caller,
            key=request.key,
            method=request.method,
            path=request.path,
            wait_seconds=wait_seconds,
            replay_wait_seconds=replay_wait_seconds,
            request_fingerprint=request.fingerprint(meaning, scope=scope),
            enqueue=enqueue,
        )

    async def run(
        self,
        *,
        caller: Caller,
        key: str,
        request_fingerprint: str,
        method: str,
        path: str,
        wait_seconds: float,
        enqueue: Enqueue,
        replay_wait_seconds: float = 0.0,
    ) -> tuple[Outcome, bool]:
        """Run `enqueue(conn)` once per key; returns the answer and whether it is a replay.

        `wait_seconds` bounds the wait for this request's own command; `replay_wait_seconds` (only
        what the caller asked for with `Prefer: wait=N`) bounds the wait for a request still running
        under the key.
        """
        # A retry usually finds its key: answer it with one read, without a write transaction.
        async with self.reads.connect() as conn:
            record = await IdempotencyRepository(conn).get(caller.client, key)
        if record is not None:
            return await self._existing(
                caller, key, record, request_fingerprint, replay_wait_seconds
            ), True
        committing = False
        try:
            async with self.engine.begin() as conn:
                claimed, result, record = await self._claim_and_enqueue(
                    conn, caller, key, request_fingerprint, method, path, enqueue
                )
                committing = True  # from here on, a failure may come after the commit went through
        except Exception as exc:
            if not (committing and database_unavailable(exc)):
                raise
            raise errors.ServiceUnavailable(
                "The database went away while the request was being committed: it may or may not "
                "have been applied. Retry with the same Idempotency-Key; the retry answers either "
                "way.",
                headers={"Retry-After": "2"},
            ) from exc
        if not claimed:
            return await self._existing(
                caller, key, record, request_fingerprint, replay_wait_seconds
            ), True
        if isinstance(result, Outcome):
            return result, False
        assert result is not None
        outcome = await self._accepted_outcome(
            caller, key, result.operation_id, wait_seconds, store_accepted=True
        )
        return outcome, False

    async def _claim_and_enqueue(
        self,
        conn: AsyncConnection,
        caller: Caller,
        key: str,
        request_fingerprint: str,
        method: str,
        path: str,
        enqueue: Enqueue,
    ) -> tuple[bool, Accepted | Outcome | None, IdempotencyRecord | None]:
        """In the caller's transaction: claim the key and run `enqueue`, or find the key's
        record."""
        repo = IdempotencyRepository(conn)
        claimed = await repo.claim(
            client=caller.client,
            key=key,
            fingerprint=request_fingerprint,
            method=method,
            path=path,
            lock_seconds=self.settings.idempotency_lock_seconds,
        )
        if not claimed:
            return False, None, await repo.get(caller.client, key)
        result = await enqueue(conn)
        if isinstance(result, Accepted):
            await repo.attach_operation(caller.client, key, result.operation_id)
        else:
            await repo.complete(
                caller.client, key, status=result.status, headers=result.headers, body=result.body
            )
        return True, result, None

    async def _accepted_outcome(
        self,
        caller: Caller,
        key: str,
        operation_id: uuid.UUID,
        wait_seconds: float,
        *,
        store_accepted: bool,
    ) -> Outcome:
        """`_final_outcome` for a command already committed: an outage now is no "nothing was
        applied"."""
        try:
            return await self._final_outcome(
                caller, key, operation_id, wait_seconds, store_accepted=store_accepted
            )
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            raise errors.ServiceUnavailable(
                f"The request was accepted (operation {operation_id}) and will be carried out, but "
                "its outcome could not be read: the database is unavailable. Retry with the same "
                "Idempotency-Key to get the answer; do not send it with a new key.",
                headers={"Retry-After": "2", "Location": f"/v1/operations/{operation_id}"},
                operationId=str(operation_id),
            ) from exc

    async def _existing(
        self,
        caller: Caller,
        key: str,
        record: IdempotencyRecord | None,
        request_fingerprint: str,
        wait_seconds: float,
    ) -> Outcome:
        if record is None:  # purged between our claim and read: vanishingly rare, ask for a retry
            raise errors.IdempotencyKeyInUse(
                "The Idempotency-Key was just released; retry the request.",
                headers={"Retry-After": "1"},
                retryAfter=1,
            )
        if record.fingerprint != request_fingerprint:
            raise errors.IdempotencyKeyReused(
                f"Idempotency-Key was first used for {record.method} {record.path} with a "
                "different body; use a new key for a different request."
            )
        if record.state == "completed":
            assert record.response_status is not None
            return Outcome(
                record.response_status, record.response_body, dict(record.response_headers or {})
            )
        if record.operation_id is not None:
            outcome = await self._accepted_outcome(
                caller, key, record.operation_id, wait_seconds, store_accepted=False
            )
            if outcome.status != 202:
                return outcome
        raise errors.IdempotencyKeyInUse(
            "A request with this Idempotency-Key is still being processed; retry after a moment, "
            "or send `Prefer: wait=<seconds>` to wait for it.",
            headers={"Retry-After": "1"},
            retryAfter=1,
        )
