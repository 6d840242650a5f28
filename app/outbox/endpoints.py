"""/v1/operations: the state of outbox commands, and operators' re-drive of failed ones."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.http.deps import Admin, ExecutorDep, IdempotencyKey, Reader, SettingsDep
from app.http.problems import problem_responses
from app.idempotency.executor import fingerprint
from app.invoices.endpoints import respond
from app.invoices.presenters import decode_cursor, encode_cursor, operation_out
from app.invoices.repository import Repository
from app.invoices.schemas import OperationOut, OperationPage
from app.invoices.service import Outcome, requeue_failed_operation

router = APIRouter(prefix="/v1/operations", tags=["operations"])


@router.get("/{operationId}", response_model=OperationOut, responses=problem_responses(401, 403, 404, 422),
            summary="State of one outbox command: pending, in_flight, succeeded, failed")
async def get_operation(request: Request, operationId: uuid.UUID, caller: Reader) -> OperationOut:
    async with request.app.state.reads.connect() as conn:
        row = await Repository(conn).get_operation(operationId)
    if row is None or (row["owner"] != caller.client and not caller.is_admin):
        raise errors.OperationNotFound(f"There is no operation {operationId}.")
    return operation_out(row)


@router.get("", response_model=OperationPage, responses=problem_responses(400, 401, 403, 422),
            summary="Operators: list commands, e.g. state=failed (dead-lettered)")
async def list_operations(request: Request, caller: Admin,
                          state: Literal["pending", "in_flight", "succeeded", "failed"] | None = None,
                          cursor: Annotated[str | None, Query(max_length=200)] = None,
                          limit: Annotated[int, Query(ge=1, le=200)] = 50) -> OperationPage:
    after = None
    if cursor is not None:
        (seq,) = decode_cursor(cursor, 1)
        if not seq.isdigit():
            raise errors.MalformedRequest("The cursor is not one this API handed out.")
        after = int(seq)
    async with request.app.state.reads.connect() as conn:
        rows = await Repository(conn).list_operations(state=state, after_seq=after, limit=limit + 1)
    next_cursor = encode_cursor(rows[limit - 1]["seq"]) if len(rows) > limit else None
    return OperationPage(items=[operation_out(r) for r in rows[:limit]], nextCursor=next_cursor)


@router.post("/{operationId}/retry", response_model=OperationOut, status_code=202,
             responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
             summary="Operators: re-drive a command that failed for good")
async def retry_operation(request: Request, operationId: uuid.UUID, caller: Admin,
                          key: IdempotencyKey, executor: ExecutorDep, settings: SettingsDep) -> JSONResponse:
    async def enqueue(conn: AsyncConnection) -> Any:
        row = await requeue_failed_operation(Repository(conn), operationId)
        return Outcome(202, operation_out(row).model_dump(mode="json"),
                       {"Location": f"/v1/operations/{operationId}"})

    outcome, replayed = await executor.run(
        caller=caller, key=key, method="POST", path=request.url.path, wait_seconds=0,
        request_fingerprint=fingerprint("POST", request.url.path, None), enqueue=enqueue)
    return respond(outcome, replayed)
