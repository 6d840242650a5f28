"""/v1/invoices: parse -> one service call -> respond."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BeforeValidator

from app.auth.dependencies import Reader, Writer
from app.http.deps import MerchantProfileHeader, provide
from app.http.json_body import JsonBodyRoute
from app.http.mutations import MutationDep
from app.http.problems import problem_responses
from app.http.responses import as_json, respond
from app.invoices.commands import InvoiceStatus, OperationKind
from app.invoices.schemas import InvoiceCreate, InvoiceOut, InvoicePage, InvoiceUpdate
from app.invoices.service import InvoiceQuery, InvoiceService
from app.outbox.schemas import OperationOut
from app.upstream_sync.service import UpstreamSyncService

router = APIRouter(prefix="/v1/invoices", tags=["invoices"], route_class=JsonBodyRoute)
Invoices = Annotated[InvoiceService, Depends(provide(InvoiceService))]
Sync = Annotated[UpstreamSyncService, Depends(provide(UpstreamSyncService))]
# ASCII digits only (`\d` also takes other scripts' digits).
ISO_DATETIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)


def _not_iso() -> None:
    # Without this, pydantic would read "0.5" as a Unix timestamp.
    raise ValueError("must be an ISO 8601 date or date-time, e.g. 2026-11-25T10:00:00Z")


ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": OperationOut,
        "description": "Accepted: still on its way to Cybersource; follow Location (/v1/operations/{id})",
    }
}
MUTATION_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 502, 503)


def _storable(value: datetime) -> datetime:
    """A moment the database can be asked about: 9999-12-31T23:00-14:00 is past year 9999 in UTC."""
    try:
        value.replace(tzinfo=value.tzinfo or UTC).astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the dates the store holds (years 1 to 9999 in UTC)") from None
    return value


IsoDatetime = Annotated[
    datetime,
    BeforeValidator(lambda v: v if not isinstance(v, str) or ISO_DATETIME.match(v) else _not_iso()),
    AfterValidator(_storable),
]


@router.post(
    "",
    status_code=201,
    response_model=InvoiceOut,
    responses={**ACCEPTED, **MUTATION_ERRORS},
    summary="Create an invoice (draft by default; or created, or created and sent)",
)
async def create_invoice(
    body: InvoiceCreate,
    caller: Writer,
    request: MutationDep,
    invoices: Invoices,
    profile: MerchantProfileHeader = "default",
) -> JSONResponse:
    return respond(await invoices.create(caller, profile, body, request))


@router.get(
    "",
    response_model=InvoicePage,
    responses=problem_responses(400, 401, 403),
    summary="List invoices from the local store, newest first",
)
async def list_invoices(
    caller: Reader,
    invoices: Invoices,
    status: InvoiceStatus | None = None,
    customer_email: Annotated[str | None, Query(alias="customerEmail", max_length=255)] = None,
    created_from: Annotated[IsoDatetime | None, Query(alias="createdFrom")] = None,
    created_to: Annotated[IsoDatetime | None, Query(alias="createdTo")] = None,
    owner: Annotated[str | None, Query(max_length=64, description="admins only")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    profile: MerchantProfileHeader = "default",
) -> Response:
    query = InvoiceQuery(
        profile=profile,
        status=status,
        customer_email=customer_email,
        created_from=created_from,
        created_to=created_to,
        owner=owner,
        cursor=cursor,
        limit=limit,
    )
    return as_json(await invoices.page(caller, query))


@router.get(
    "/{invoiceNumber}",
    response_model=InvoiceOut,
    responses=problem_responses(401, 403, 404, 422, 429, 502),
    summary="One invoice from the local store; refresh=true reads Cybersource first",
)
async def get_invoice(
    invoiceNumber: str,
    caller: Reader,
    invoices: Invoices,
    sync: Sync,
    refresh: bool = False,
    profile: MerchantProfileHeader = "default",
) -> Response:
    if refresh:
        return as_json(await sync.refreshed_invoice(caller, profile, invoiceNumber))
    return as_json(await invoices.get(caller, profile, invoiceNumber))


@router.put(
    "/{invoiceNumber}",
    response_model=InvoiceOut,
    responses={**ACCEPTED, **MUTATION_ERRORS},
    summary="Replace an invoice's content (DRAFT, CREATED or SENT)",
)
async def update_invoice(
    invoiceNumber: str,
    body: InvoiceUpdate,
    caller: Writer,
    request: MutationDep,
    invoices: Invoices,
    profile: MerchantProfileHeader = "default",
) -> JSONResponse:
    return respond(await invoices.update(caller, profile, invoiceNumber, body, request))


def _action_route(kind: OperationKind, summary: str) -> None:
    async def action(
        invoiceNumber: str,
        caller: Writer,
        request: MutationDep,
        invoices: Invoices,
        profile: MerchantProfileHeader = "default",
    ) -> JSONResponse:
        return respond(await invoices.act(caller, profile, invoiceNumber, kind, request))

    action.__name__ = f"{kind}_invoice"
    router.add_api_route(
        f"/{{invoiceNumber}}/{kind}",
        action,
        methods=["POST"],
        response_model=InvoiceOut,
        responses={**ACCEPTED, **MUTATION_ERRORS},
        summary=summary,
        name=f"{kind}_invoice",
    )


_action_route(OperationKind.PUBLISH, "Publish a draft (DRAFT -> CREATED) without e-mailing it")
_action_route(OperationKind.SEND, "Publish and e-mail the invoice, or resend it")
_action_route(OperationKind.CANCEL, "Cancel an unpaid invoice")
