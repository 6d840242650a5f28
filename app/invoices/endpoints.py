"""/v1/invoices: parse -> service (through the idempotency executor) -> respond."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import MalformedRequest
from app.http.deps import (
    ExecutorDep,
    IdempotencyKey,
    MerchantProfileHeader,
    PreferHeader,
    Reader,
    ServiceDep,
    SettingsDep,
    Writer,
)
from app.http.problems import problem_responses
from app.idempotency.executor import REPLAYED_HEADER, fingerprint, prefer_wait
from app.invoices.presenters import decode_cursor, encode_cursor, invoice_out
from app.invoices.repository import InvoiceFilter, Repository
from app.invoices.schemas import InvoiceCreate, InvoiceOut, InvoicePage, InvoiceUpdate, OperationOut
from app.invoices.service import Caller, Outcome

router = APIRouter(prefix="/v1/invoices", tags=["invoices"])
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def _not_iso() -> None:
    # Without this, pydantic would read "0.5" as a Unix timestamp.
    raise ValueError("must be an ISO 8601 date or date-time, e.g. 2026-11-25T10:00:00Z")

ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": OperationOut,
          "description": "Accepted: still on its way to Cybersource; follow Location (/v1/operations/{id})"}}
MUTATION_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 502, 503)
IsoDatetime = Annotated[datetime, BeforeValidator(
    lambda v: v if not isinstance(v, str) or ISO_DATETIME.match(v) else _not_iso())]
InvoiceStatus = Literal["DRAFT", "CREATED", "SENT", "PARTIAL", "PAID", "CANCELED", "PENDING"]


def as_json(model: BaseModel) -> Response:
    """Serialise once, straight from the model (a read hot path: no second validation by FastAPI)."""
    return Response(model.model_dump_json(), media_type="application/json")


def respond(outcome: Outcome, replayed: bool) -> JSONResponse:
    headers = dict(outcome.headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    media = "application/problem+json" if outcome.status >= 400 else "application/json"
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers, media_type=media)


async def _execute(request: Request, executor: ExecutorDep, settings: SettingsDep, caller: Caller, key: str,
                   profile: str, prefer: str | None, body: Any, enqueue: Any) -> JSONResponse:
    wait, _ = prefer_wait(prefer, settings.request_wait_seconds)
    asked, _ = prefer_wait(prefer, 0.0)  # a request still running under the key: 409 unless asked to wait
    outcome, replayed = await executor.run(
        caller=caller, key=key, method=request.method, path=request.url.path, wait_seconds=wait,
        replay_wait_seconds=asked,
        request_fingerprint=fingerprint(request.method, request.url.path, body, scope=profile), enqueue=enqueue)
    return respond(outcome, replayed)


@router.post("", status_code=201, response_model=InvoiceOut, responses={**ACCEPTED, **MUTATION_ERRORS},
             summary="Create an invoice (draft by default; or created, or created and sent)")
async def create_invoice(request: Request, body: InvoiceCreate, caller: Writer, key: IdempotencyKey,
                         service: ServiceDep, executor: ExecutorDep, settings: SettingsDep,
                         prefer: PreferHeader = None, profile: MerchantProfileHeader = "default") -> JSONResponse:
    async def enqueue(conn: AsyncConnection) -> Any:
        return await service.create(conn, caller, profile, body)

    return await _execute(request, executor, settings, caller, key, profile, prefer,
                          body.model_dump(mode="json", exclude_unset=True), enqueue)


@router.get("", response_model=InvoicePage, responses=problem_responses(400, 401, 403),
            summary="List invoices from the local store, newest first")
async def list_invoices(request: Request, caller: Reader,
                        status: InvoiceStatus | None = None,
                        customer_email: Annotated[str | None, Query(alias="customerEmail", max_length=255)] = None,
                        created_from: Annotated[IsoDatetime | None, Query(alias="createdFrom")] = None,
                        created_to: Annotated[IsoDatetime | None, Query(alias="createdTo")] = None,
                        owner: Annotated[str | None, Query(max_length=64, description="admins only")] = None,
                        cursor: Annotated[str | None, Query(max_length=200)] = None,
                        limit: Annotated[int, Query(ge=1, le=200)] = 50,
                        profile: MerchantProfileHeader = "default") -> Response:
    if not caller.is_admin:
        owner = caller.client
    after = None
    if cursor is not None:
        created, row_id = decode_cursor(cursor, 2)
        try:
            after = (datetime.fromisoformat(created), int(row_id))
        except ValueError:
            raise MalformedRequest("The cursor is not one this API handed out.") from None
    filters = InvoiceFilter(owner=owner, status=status, customer_email=customer_email,
                            created_from=created_from, created_to=created_to, merchant_profile=profile)
    async with request.app.state.reads.connect() as conn:
        rows = await Repository(conn).list_invoices(filters, after=after, limit=limit + 1)
    items = [invoice_out(row) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return as_json(InvoicePage(items=items, nextCursor=next_cursor))


@router.get("/{invoiceNumber}", response_model=InvoiceOut, responses=problem_responses(401, 403, 404, 422, 502),
            summary="One invoice from the local store; refresh=true reads Cybersource first")
async def get_invoice(request: Request, invoiceNumber: str, caller: Reader, service: ServiceDep,
                      refresh: bool = False, profile: MerchantProfileHeader = "default") -> Response:
    if refresh:  # read Cybersource first (history, balance), record it, then answer from the store
        async with request.app.state.reads.connect() as conn:
            seen = await service.owned(conn, caller, profile, invoiceNumber)
        if seen["status"] is not None:  # else our create has not reached Cybersource yet
            state = await service.read_upstream(profile, invoiceNumber)
            async with request.app.state.engine.begin() as conn:
                await service.record_observation(conn, profile, seen, state)
    async with request.app.state.reads.connect() as conn:
        return as_json(await service.get(conn, caller, profile, invoiceNumber))


@router.put("/{invoiceNumber}", response_model=InvoiceOut, responses={**ACCEPTED, **MUTATION_ERRORS},
            summary="Replace an invoice's content (DRAFT, CREATED or SENT)")
async def update_invoice(request: Request, invoiceNumber: str, body: InvoiceUpdate, caller: Writer,
                         key: IdempotencyKey, service: ServiceDep, executor: ExecutorDep, settings: SettingsDep,
                         prefer: PreferHeader = None, profile: MerchantProfileHeader = "default") -> JSONResponse:
    async def enqueue(conn: AsyncConnection) -> Any:
        return await service.update(conn, caller, profile, invoiceNumber, body)

    return await _execute(request, executor, settings, caller, key, profile, prefer,
                          body.model_dump(mode="json", exclude_unset=True), enqueue)


def _action_route(kind: str, summary: str) -> None:
    async def action(request: Request, invoiceNumber: str, caller: Writer, key: IdempotencyKey,
                     service: ServiceDep, executor: ExecutorDep, settings: SettingsDep,
                     prefer: PreferHeader = None, profile: MerchantProfileHeader = "default") -> JSONResponse:
        async def enqueue(conn: AsyncConnection) -> Any:
            return await service.act(conn, caller, profile, invoiceNumber, kind)

        return await _execute(request, executor, settings, caller, key, profile, prefer, None, enqueue)

    action.__name__ = f"{kind}_invoice"
    router.add_api_route(f"/{{invoiceNumber}}/{kind}", action, methods=["POST"], response_model=InvoiceOut,
                         responses={**ACCEPTED, **MUTATION_ERRORS}, summary=summary, name=f"{kind}_invoice")


_action_route("publish", "Publish a draft (DRAFT -> CREATED) without e-mailing it")
_action_route("send", "Publish and e-mail the invoice, or resend it")
_action_route("cancel", "Cancel an unpaid invoice")
