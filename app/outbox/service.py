"""Operators' view of the outbox: one command, the list (e.g. dead letters), and re-driving a failed
one."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app import errors
from app.auth.principal import Caller
from app.http.mutations import Mutation
from app.idempotency.executor import IdempotentExecutor, Outcome
from app.idempotency.repository import IdempotencyRepository
from app.kit.cursors import decode_ids, encode_cursor
from app.outbox.presenters import operation_out
from app.outbox.repository import OperationRow, OutboxRepository
from app.outbox.schemas import OperationOut, OperationPage


def operation_not_found(operation_id: uuid.UUID) -> errors.OperationNotFound:
    return errors.OperationNotFound(f"There is no operation {operation_id}.")


async def requeue_failed(
    conn: AsyncConnection, operation_id: uuid.UUID, caller: Caller | None = None
) -> OperationRow:
    """Put a command that failed for good back in the outbox (the API's caller, or the CLI's
    operator)."""
    outbox = OutboxRepository(conn)
    found = await outbox.get(operation_id)
    if found is None or (
        caller is not None and not caller.may_see(found.owner, found.merchant_profile)
    ):
        raise operation_not_found(operation_id)
    if not await outbox.requeue_failed(operation_id):
        raise errors.OperationNotRetryable(
            "Only an operation in state failed or unknown can be retried."
        )
    # The keys that answered its failure follow it again: a replay answers what the re-drive does.
    await IdempotencyRepository(conn).follow_again(operation_id)
    row = await outbox.get(operation_id)
    assert row is not None
    return row


async def list_operations(
    conn: AsyncConnection,
    *,
    state: str | None,
    after: str | None,
    limit: int,
    profiles: frozenset[str] | None = None,
) -> OperationPage:
    after_seq = None if after is None else decode_ids(after, 1)[0]
    rows = await OutboxRepository(conn).list_by_seq(
        state=state, after_seq=after_seq, limit=limit + 1, profiles=profiles
    )
    page, more = rows[:limit], len(rows) > limit
    return OperationPage(
        items=[operation_out(row) for row in page],
        nextCursor=encode_cursor(page[-1].seq) if more else None,
    )


class OperationService:
    def __init__(
        self, *, engine: AsyncEngine, reads: AsyncEngine, executor: IdempotentExecutor
    ) -> None:
        self.engine = engine
        self.reads = reads
        self.executor = executor

    async def get(self, caller: Caller, operation_id: uuid.UUID) -> OperationOut:
        async with self.reads.connect() as conn:
            row = await OutboxRepository(conn).get(operation_id)
        if row is None or not caller.may_see(row.owner, row.merchant_profile):
            raise operation_not_found(operation_id)
        return operation_out(row)

    async def page(
        self, caller: Caller, *, state: str | None, cursor: str | None, limit: int
    ) -> OperationPage:
        async with self.reads.connect() as conn:
            return await list_operations(
                conn, state=state, after=cursor, limit=limit, profiles=caller.profiles
            )

    async def retry(
        self, caller: Caller, operation_id: uuid.UUID, request: Mutation
    ) -> tuple[Outcome, bool]:
        async def requeue(conn: AsyncConnection) -> Outcome:
            row = await requeue_failed(conn, operation_id, caller)
            body = operation_out(row).model_dump(mode="json")
            return Outcome(202, body, {"Location": f"/v1/operations/{operation_id}"})

        return await self.executor.run_request(caller, request, None, requeue)
