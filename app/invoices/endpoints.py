"""/v1/invoices: parse -> one service call -> respond."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BeforeValidator, StringConstraints

from app import errors
from app.auth.dependencies import Admin, Reader, Writer
from app.http.deps import MerchantProfileHeader, provide
from app.http.json_body import JsonBodyRoute
from app.http.mutations import KeyedMutationDep, MutationDep
from app.http.problems import problem_responses
from app.http.responses import as_json, respond
from app.invoices.commands import InvoiceStatus, OperationKind
from app.invoices.listing import InvoiceQuery
from app.invoices.schemas import (
    METADATA_KEY_PATTERN,
    METADATA_MAX_KEYS,
    METADATA_VALUE_MAX_LENGTH,
    DateText,
    InvoiceCreate,
    InvoiceOut,
    InvoicePage,
    InvoiceUpdate,
)
from app.invoices.service import InvoiceService
from app.outbox.schemas import OperationOut
from app.upstream_sync.adoption import AdoptionService
from app.upstream_sync.schemas import InvoiceAdopt
from app.upstream_sync.service import UpstreamSyncService

router = APIRouter(prefix="/v1/invoices", tags=["invoices"], route_class=JsonBodyRoute)
Invoices = Annotated[InvoiceService, Depends(provide(InvoiceService))]
Adoption = Annotated[AdoptionService, Depends(provide(AdoptionService))]
# ASCII digits only (`\d` also takes other scripts' digits).
ISO_DATETIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)


def _not_iso() -> None:
    # Without this, pydantic would read "0.5" as a Unix timestamp.
    raise ValueError("must be an ISO 8601 date or date-time, e.g. 2026-11-25T10:00:00Z")


_ANY_STATUS = "|".join(status.value for status in InvoiceStatus)
STATUS_LIST_PATTERN = rf"^({_ANY_STATUS})(,({_ANY_STATUS}))*$"
ListSort = Literal["-createdAt", "createdAt", "dueDate", "-dueDate", "amount", "-amount"]
QueryAmount = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
METADATA_PARAM = re.compile(r"^metadata\[(.*)\]$")
# `metadata[key]=value`, one parameter per key (OpenAPI's deepObject style); FastAPI cannot declare
# it.
METADATA_QUERY: dict[str, Any] = {
    "name": "metadata",
    "in": "query",
    "style": "deepObject",
    "explode": True,
    "required": False,
    "description": "`metadata[key]=value`: invoices whose metadata has that value for that key "
    "(several keys: all of them)",
    "schema": {
        "type": "object",
        "propertyNames": {"pattern": METADATA_KEY_PATTERN},
        "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_MAX_LENGTH},
        "maxProperties": METADATA_MAX_KEYS,
    },
}


def metadata_filter(items: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The `metadata[key]=value` pairs of a query string; a malformed key is a 400."""
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        if not name.startswith("metadata"):
            continue
        match = METADATA_PARAM.match(name)
        if match is None or not re.match(METADATA_KEY_PATTERN, match.group(1)):
            raise errors.MalformedRequest(
                f"{name!r}: filter metadata as metadata[key]=value, keys of 1-40 characters "
                "[A-Za-z0-9_.:-]."
            )
        if len(value) > METADATA_VALUE_MAX_LENGTH or "\x00" in value:
            raise errors.MalformedRequest(f"{name!r}: the value is too long or holds NUL.")
        pairs.append((match.group(1), value))
    if len(pairs) > METADATA_MAX_KEYS:
        raise errors.MalformedRequest(f"filter on at most {METADATA_MAX_KEYS} metadata keys.")
    return tuple(pairs)


ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": OperationOut,
        "description": (
            "Accepted: still on its way to Cybersource; follow Location (/v1/operations/{id})"
        ),
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
    summary="List invoices from the local store (newest first unless sorted); receivables filters",
    openapi_extra={"parameters": [METADATA_QUERY]},
)
async def list_invoices(
    request: Request,
    caller: Reader,
    invoices: Invoices,
    status: Annotated[
        str | None,
        Query(
            pattern=STATUS_LIST_PATTERN,
            description="one status, or several separated by commas: `SENT,PARTIAL`",
        ),
    ] = None,
    customer_email: Annotated[
        str | None, Query(alias="customerEmail", max_length=255, description="in any case")
    ] = None,
    created_from: Annotated[IsoDatetime | None, Query(alias="createdFrom")] = None,
    created_to: Annotated[IsoDatetime | None, Query(alias="createdTo")] = None,
    due_from: Annotated[
        DateText | None, Query(alias="dueDateFrom", description="due on or after (YYYY-MM-DD)")
    ] = None,
    due_to: Annotated[
        DateText | None, Query(alias="dueDateTo", description="due on or before (YYYY-MM-DD)")
    ] = None,
    overdue: Annotated[
        bool | None,
        Query(
            description="true: due before today (UTC) and still open (CREATED, SENT, PARTIAL, "
            "PENDING); false: all others"
        ),
    ] = None,
    amount_from: Annotated[
        QueryAmount | None, Query(alias="amountFrom", description="total at least")
    ] = None,
    amount_to: Annotated[
        QueryAmount | None, Query(alias="amountTo", description="total at most")
    ] = None,
    merchant_customer_id: Annotated[
        str | None, Query(alias="merchantCustomerId", max_length=100)
    ] = None,
    external_reference: Annotated[
        str | None, Query(alias="externalReference", max_length=255)
    ] = None,
    sort: Annotated[
        ListSort,
        Query(
            description="`-createdAt` (newest first), `dueDate`, `-dueDate`, `amount`, `-amount`"
        ),
    ] = "-createdAt",
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
        due_from=due_from,
        due_to=due_to,
        overdue=overdue,
        amount_from=None if amount_from is None else Decimal(amount_from),
        amount_to=None if amount_to is None else Decimal(amount_to),
        merchant_customer_id=merchant_customer_id,
        external_reference=external_reference,
        metadata=metadata_filter(request.query_params.multi_items()),
        sort=sort,
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
    request: Request,
    refresh: bool = False,
    profile: MerchantProfileHeader = "default",
) -> Response:
    if refresh:  # looked up here, not as a dependency: each one costs every read its resolution
        sync = await provide(UpstreamSyncService)(request)
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


# The docstring is the OpenAPI description (openapi/openapi.json): a backslash-newline keeps its
# text unchanged where a line would be longer than 100 characters.
@router.post(
    "/{invoiceNumber}/adopt",
    status_code=201,
    response_model=InvoiceOut,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 502, 503),
    summary=(
        "Admins: take an invoice made outside the facade into the store (read from Cybersource)"
    ),
)
async def adopt_invoice(
    invoiceNumber: str,
    caller: Admin,
    request: KeyedMutationDep,
    adoption: Adoption,
    body: Annotated[InvoiceAdopt | None, Body()] = None,
    profile: MerchantProfileHeader = "default",
) -> JSONResponse:
    """Reads the invoice from Cybersource and stores it under `owner` (default: you), in sync, \
with an
    `invoice.adopted` event; from then on it is like any other invoice (routes, webhooks, the status
    reconciler). 404 when Cybersource has no such invoice, 409 `invoice_already_stored` when the
    facade has it. Nothing is sent to Cybersource."""
    adopt = body or InvoiceAdopt()
    return respond(await adoption.adopt(caller, profile, invoiceNumber, adopt, request))
