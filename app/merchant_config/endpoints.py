"""/v1/invoice-settings: Cybersource's payment-page settings, passed through and signed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.cybersource.client import CybersourceClient
from app.cybersource.errors import AuthenticationError, CybersourceError, RejectedError
from app.http.deps import Admin, ExecutorDep, IdempotencyKey, MerchantProfileHeader, Reader
from app.http.problems import problem_responses
from app.idempotency.executor import fingerprint
from app.invoices.endpoints import respond
from app.invoices.service import Outcome

router = APIRouter(prefix="/v1/invoice-settings", tags=["invoice settings"])
ProductType = Literal["INVOICING", "PAYBYLINK"]


def _client(request: Request, profile: str) -> CybersourceClient:
    if profile not in request.app.state.settings.merchant_profiles:
        raise errors.MalformedRequest(f"Unknown merchant profile {profile!r}.")
    client: CybersourceClient = request.app.state.clients.get(profile)
    return client


def _upstream_problem(exc: CybersourceError) -> errors.ApiError:
    if isinstance(exc, RejectedError):
        details = [{"field": d.get("field"), "message": d.get("reason")} for d in exc.details]
        return errors.UpstreamRejected(f"Cybersource rejected the settings: {exc.message}", errors=details or None)
    if isinstance(exc, AuthenticationError):
        return errors.UpstreamUnavailable("Cybersource refused the facade's credentials.")
    return errors.UpstreamUnavailable(f"Cybersource could not be reached: {exc.message}")


@router.get("", responses=problem_responses(400, 401, 403, 422, 502),
            summary="Read the payment-page settings from Cybersource")
async def get_settings(request: Request, caller: Reader, productType: ProductType | None = None,
                       profile: MerchantProfileHeader = "default") -> dict[str, Any]:
    try:
        result = await _client(request, profile).get_invoice_settings(productType)
    except CybersourceError as exc:
        raise _upstream_problem(exc) from exc
    return dict(result.raw)


@router.put("", responses=problem_responses(400, 401, 403, 409, 422, 502, 503),
            summary="Change the payment-page settings at Cybersource (admins)")
async def put_settings(request: Request, caller: Admin, key: IdempotencyKey, executor: ExecutorDep,
                       body: Annotated[dict[str, Any], Body(description="Cybersource's InvoiceSettingsRequest")],
                       productType: ProductType | None = None,
                       profile: MerchantProfileHeader = "default") -> JSONResponse:
    client = _client(request, profile)

    async def call(_conn: AsyncConnection) -> Outcome:
        # Inside the key's transaction: a crash or an unreachable Cybersource rolls the claim back, so
        # the retry runs again (a full replacement is safe to repeat); a rejection is a final answer.
        try:
            result = await client.update_invoice_settings(body, productType)
        except RejectedError as exc:
            problem = _upstream_problem(exc)
            return Outcome(problem.status_code, problem.problem(instance=request.url.path), {})
        except CybersourceError as exc:
            raise _upstream_problem(exc) from exc
        return Outcome(200, dict(result.raw), {})

    async with request.app.state.settings_changes:
        outcome, replayed = await executor.run(
            caller=caller, key=key, method="PUT", path=request.url.path, wait_seconds=0,
            request_fingerprint=fingerprint("PUT", request.url.path, {"q": productType, "body": body}, scope=profile),
            enqueue=call)
    return respond(outcome, replayed)
