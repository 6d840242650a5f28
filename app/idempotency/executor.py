"""Idempotency keys (draft-ietf-httpapi-idempotency-key-header) on every mutating call.

The key is claimed in the same transaction as the invoice row and the outbox command, so a crash before
commit leaves nothing behind (the retry runs again) and a crash after commit leaves a record that points
at its command (the retry gets that command's answer). Rules:

- same client + key + same request (fingerprint) -> the first answer, replayed with `Idempotent-Replayed`;
- same key, different request -> 422; first request still running -> 409 with Retry-After, or a bounded
  wait when the caller sent `Prefer: wait=N`;
- requests refused before anything was written (validation, state) keep no record: a retry re-checks.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app import errors
from app.invoices.repository import Repository
from app.invoices.service import Accepted, Caller, InvoiceService, Outcome
from app.outbox.waiter import OperationWaiter
from app.settings import Settings

MAX_KEY_LENGTH = 255
_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,255}$")  # visible ASCII but `"` and `\`
_SF_STRING = re.compile(r'^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$')
REPLAYED_HEADER = "Idempotent-Replayed"


def parse_idempotency_key(value: str | None) -> str:
    """Accept the draft's structured-field string (`"abc"`) and a bare token (`abc`): the same key."""
    if value is None or not value.strip():
        raise errors.IdempotencyKeyMissing(
            "Every POST, PUT and PATCH needs an Idempotency-Key header (for example a UUID) so that a retry "
            "never applies the request twice.")
    value = value.strip()
    quoted = _SF_STRING.match(value)
    key = re.sub(r"\\(.)", r"\1", quoted.group(1)) if quoted else value
    if not key or len(key) > MAX_KEY_LENGTH or (not quoted and not _TOKEN.match(key)):
        raise errors.IdempotencyKeyInvalid(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters, bare or as a quoted "
            "string.")
    return key


def fingerprint(method: str, path: str, body: Any, *, scope: str = "") -> str:
    """Hash of the request's meaning: method, path, merchant scope and the canonical JSON body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method.upper()}\n{path}\n{scope}\n{canonical}".encode()).hexdigest()


class IdempotentExecutor:
    def __init__(self, engine: AsyncEngine, reads: AsyncEngine, settings: Settings, service: InvoiceService,
                 waiter: OperationWaiter) -> None:
        self.engine = engine
        self.reads = reads  # autocommit: the replay check is one statement, no transaction
        self.settings = settings
        self.service = service
        self.waiter = waiter

    async def _final_outcome(self, caller: Caller, key: str, operation_id: uuid.UUID, wait_seconds: float, *,
                             store_accepted: bool) -> Outcome:
        """Wait (bounded) for the command, then store its answer under the key, in one transaction.

        A 202 is stored only by the request that answers it (`store_accepted`); a retry that finds the
        command still running stores nothing and answers 409 instead. A first request with no wait
        (`Prefer: respond-async`, or `REQUEST_WAIT_SECONDS=0`) always answers 202.
        """
        if wait_seconds > 0:
            await self.waiter.wait(operation_id, wait_seconds)
        async with self.engine.begin() as conn:
            # A first request that asked not to wait answers 202 even when a fast relay already finished.
            outcome = await self.service.outcome(conn, operation_id, accepted=store_accepted and wait_seconds <= 0)
            if store_accepted or outcome.status != 202:
                await Repository(conn).complete_idempotency_key(
                    caller.client, key, status=outcome.status, headers=outcome.headers, body=outcome.body)
        return outcome

    async def run(self, *, caller: Caller, key: str, request_fingerprint: str, method: str, path: str,
                  wait_seconds: float, enqueue: Callable[..., Awaitable[Accepted | Outcome]],
                  replay_wait_seconds: float = 0.0) -> tuple[Outcome, bool]:
        """Run `enqueue(conn)` once per key; returns the answer and whether it is a replay.

        `wait_seconds` bounds the wait for this request's own command; `replay_wait_seconds` (only what the
        caller asked for with `Prefer: wait=N`) bounds the wait for a request still running under the key.
        """
        # A retry usually finds its key: answer it with one read, without a write transaction.
        async with self.reads.connect() as conn:
            record = await Repository(conn).get_idempotency_record(caller.client, key)
        if record is not None:
            return await self._existing(caller, key, record, request_fingerprint, replay_wait_seconds), True
        async with self.engine.begin() as conn:
            repo = Repository(conn)
            claimed = await repo.claim_idempotency_key(
                client=caller.client, key=key, fingerprint=request_fingerprint, method=method, path=path,
                lock_seconds=self.settings.idempotency_lock_seconds)
            if claimed:
                result = await enqueue(conn)
                if isinstance(result, Accepted):
                    await repo.attach_operation(caller.client, key, result.operation_id)
                else:
                    await repo.complete_idempotency_key(caller.client, key, status=result.status,
                                                        headers=result.headers, body=result.body)
            else:
                record = await repo.get_idempotency_record(caller.client, key)
        if claimed:
            if isinstance(result, Outcome):
                return result, False
            outcome = await self._final_outcome(caller, key, result.operation_id, wait_seconds, store_accepted=True)
            return outcome, False
        return await self._existing(caller, key, record, request_fingerprint, replay_wait_seconds), True

    async def _existing(self, caller: Caller, key: str, record: Any, request_fingerprint: str,
                        wait_seconds: float) -> Outcome:
        if record is None:  # purged between our claim and read: vanishingly rare, ask for a retry
            raise errors.IdempotencyKeyInUse("The Idempotency-Key was just released; retry the request.",
                                              headers={"Retry-After": "1"}, retryAfter=1)
        if record["fingerprint"] != request_fingerprint:
            raise errors.IdempotencyKeyReused(
                f"Idempotency-Key was first used for {record['method']} {record['path']} with a different "
                "body; use a new key for a different request.")
        if record["state"] == "completed":
            return Outcome(record["response_status"], record["response_body"], dict(record["response_headers"]))
        if record["operation_id"] is not None:
            outcome = await self._final_outcome(caller, key, record["operation_id"], wait_seconds,
                                                store_accepted=False)
            if outcome.status != 202:
                return outcome
        raise errors.IdempotencyKeyInUse(
            "A request with this Idempotency-Key is still being processed; retry after a moment, or send "
            "`Prefer: wait=<seconds>` to wait for it.", headers={"Retry-After": "1"}, retryAfter=1)


def prefer_wait(prefer: str | None, default: float) -> tuple[float, bool]:
    """(seconds to wait, respond-async asked) from an RFC 7240 Prefer header.

    Preferences are comma-separated; each may carry `;` parameters (ignored) and a quoted value.
    """
    if not prefer:
        return default, False
    wait = default
    for preference in prefer.split(","):
        name, _, value = preference.split(";", 1)[0].strip().partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if name == "respond-async":
            return 0.0, True
        if name == "wait" and value.isdigit():
            wait = min(float(value), 60.0)
    return wait, False
