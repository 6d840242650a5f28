"""/v1/invoice-settings: Cybersource's payment-page settings, passed through and signed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from app.auth.dependencies import Admin, Reader
from app.http.deps import MerchantProfileHeader, provide
from app.http.json_body import SettingsBodyRoute
from app.http.mutations import KeyedMutationDep
from app.http.problems import problem_responses
from app.http.responses import respond
from app.merchant_config.service import InvoiceSettingsService

router = APIRouter(
    prefix="/v1/invoice-settings", tags=["invoice settings"], route_class=SettingsBodyRoute
)
ProductType = Literal["INVOICING", "PAYBYLINK"]
Service = Annotated[InvoiceSettingsService, Depends(provide(InvoiceSettingsService))]


@router.get(
    "",
    responses=problem_responses(400, 401, 403, 422, 502),
    summary="Read the payment-page settings from Cybersource",
)
async def get_settings(
    caller: Reader,
    service: Service,
    productType: ProductType | None = None,
    profile: MerchantProfileHeader = "default",
) -> dict[str, Any]:
    return await service.read(profile, productType)


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
