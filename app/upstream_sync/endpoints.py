"""POST /v1/webhooks/cybersource: Cybersource's invoicing notifications update the store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from app.http.deps import provide
from app.http.problems import problem_responses
from app.upstream_sync.service import UpstreamSyncService

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Service = Annotated[UpstreamSyncService, Depends(provide(UpstreamSyncService))]


@router.get("/cybersource", summary="Health check URL for Cybersource's webhook subscription")
async def webhook_health() -> dict[str, str]:
    return {"status": "ok"}


@router.post(
    "/cybersource",
    responses=problem_responses(400, 401, 403, 413, 422, 429, 503),
    summary="Receive a Cybersource invoicing notification (signed with v-c-signature)",
)
async def receive(
    request: Request,
    service: Service,
    v_c_signature: Annotated[str | None, Header(alias="v-c-signature")] = None,
) -> JSONResponse:
    return JSONResponse(await service.receive_notification(await request.body(), v_c_signature))
