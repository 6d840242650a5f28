"""/v1/invoice-settings: Cybersource's payment-page settings, passed through and signed; and
/v1/merchant-defined-fields: Cybersource's merchant-defined field definitions (admins)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path
from fastapi.responses import JSONResponse, Response

from app.auth.dependencies import Admin, Reader
from app.http.deps import MerchantProfileHeader, provide
from app.http.json_body import JsonBodyRoute, SettingsBodyRoute
from app.http.mutations import KeyedMutationDep
from app.http.problems import problem_responses
from app.http.responses import PassThroughJSON, respond
from app.merchant_config.fields import MerchantDefinedFieldService
from app.merchant_config.schemas import (
    MerchantDefinedFieldDefinition,
    MerchantDefinedFieldOut,
    ReferenceType,
)
from app.merchant_config.service import InvoiceSettingsService

router = APIRouter(
    prefix="/v1/invoice-settings", tags=["invoice settings"], route_class=SettingsBodyRoute
)
ProductType = Literal["INVOICING", "PAYBYLINK"]
Service = Annotated[InvoiceSettingsService, Depends(provide(InvoiceSettingsService))]


@router.get(
    "",
    response_model=dict[str, Any],
    responses=problem_responses(400, 401, 403, 422, 502),
    summary="Read the payment-page settings from Cybersource",
)
async def get_settings(
    caller: Reader,
    service: Service,
    productType: ProductType | None = None,
    profile: MerchantProfileHeader = "default",
) -> Response:
    return PassThroughJSON(await service.read(profile, productType))


@router.put(
    "",
    responses=problem_responses(400, 401, 403, 409, 413, 422, 502, 503),
    summary="Change the payment-page settings at Cybersource (admins)",
)
async def put_settings(
    caller: Admin,
    request: KeyedMutationDep,
    service: Service,
    body: Annotated[dict[str, Any], Body(description="Cybersource's InvoiceSettingsRequest")],
    productType: ProductType | None = None,
    profile: MerchantProfileHeader = "default",
) -> JSONResponse:
    return respond(await service.change(caller, profile, productType, body, request))


fields_router = APIRouter(
    prefix="/v1/merchant-defined-fields",
    tags=["merchant-defined fields"],
    route_class=JsonBodyRoute,
)
Fields = Annotated[MerchantDefinedFieldService, Depends(provide(MerchantDefinedFieldService))]
FieldId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the definition's id")]


@fields_router.get(
    "/{referenceType}",
    response_model=list[MerchantDefinedFieldOut],
    responses=problem_responses(400, 401, 403, 422, 502),
    summary="Admins: the merchant-defined field definitions of a reference type",
)
async def list_fields(
    referenceType: ReferenceType,
    caller: Admin,
    fields: Fields,
    profile: MerchantProfileHeader = "default",
) -> list[dict[str, Any]]:
    return await fields.list(profile, referenceType)


@fields_router.post(
    "/{referenceType}",
    status_code=201,
    response_model=list[MerchantDefinedFieldOut],
    responses=problem_responses(400, 401, 403, 409, 413, 422, 502, 503),
    summary="Admins: define a merchant-defined field (answers with every definition)",
)
async def create_field(
    referenceType: ReferenceType,
    body: MerchantDefinedFieldDefinition,
    caller: Admin,
    request: KeyedMutationDep,
    fields: Fields,
    profile: MerchantProfileHeader = "default",
) -> JSONResponse:
    return respond(await fields.create(caller, profile, referenceType, body, request))


@fields_router.put(
    "/{referenceType}/{fieldId}",
    response_model=list[MerchantDefinedFieldOut],
    responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 502, 503),
    summary="Admins: replace a merchant-defined field definition (answers with every definition)",
)
async def update_field(
    referenceType: ReferenceType,
    fieldId: FieldId,
    body: MerchantDefinedFieldDefinition,
    caller: Admin,
    request: KeyedMutationDep,
    fields: Fields,
    profile: MerchantProfileHeader = "default",
) -> JSONResponse:
    return respond(await fields.update(caller, profile, referenceType, fieldId, body, request))


@fields_router.delete(
    "/{referenceType}/{fieldId}",
    status_code=204,
    responses=problem_responses(400, 401, 403, 404, 422, 502),
    summary="Admins: delete a merchant-defined field definition (an unknown one too: 204)",
)
async def delete_field(
    referenceType: ReferenceType,
    fieldId: FieldId,
    caller: Admin,
    fields: Fields,
    profile: MerchantProfileHeader = "default",
) -> Response:
    await fields.delete(profile, referenceType, fieldId)
    return Response(status_code=204)
