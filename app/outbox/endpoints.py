"""/v1/operations: the state of outbox commands, and operators' re-drive of failed ones."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from app.auth.dependencies import Admin, Reader
from app.http.deps import provide
from app.http.mutations import KeyedMutationDep
from app.http.problems import problem_responses
from app.http.responses import respond
from app.outbox.schemas import OperationOut, OperationPage, OperationState
from app.outbox.service import OperationService

router = APIRouter(prefix="/v1/operations", tags=["operations"])
Service = Annotated[OperationService, Depends(provide(OperationService))]


@router.get(
    "/{operationId}",
    response_model=OperationOut,
    responses=problem_responses(401, 403, 404, 422),
    summary=(
        "State of one outbox command: pending, in_flight, succeeded, failed, unknown, superseded"
    ),
)
async def get_operation(operationId: uuid.UUID, caller: Reader, service: Service) -> OperationOut:
    return await service.get(caller, operationId)


@router.get(
    "",
    response_model=OperationPage,
    responses=problem_responses(400, 401, 403, 422),
    summary="Operators: list commands, e.g. state=failed (dead-lettered) or state=unknown",
)
async def list_operations(
    caller: Admin,
    service: Service,
    state: OperationState | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OperationPage:
    return await service.page(caller, state=state, cursor=cursor, limit=limit)


@router.post(
    "/{operationId}/retry",
    response_model=OperationOut,
    status_code=202,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    summary="Operators: re-drive a command that failed for good or whose outcome is unknown",
)
async def retry_operation(
    operationId: uuid.UUID, caller: Admin, request: KeyedMutationDep, service: Service
) -> JSONResponse:
    return respond(await service.retry(caller, operationId, request))
