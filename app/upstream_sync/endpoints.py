"""POST /v1/webhooks/cybersource: Cybersource's invoicing notifications update the store.

A notification is a hint: the invoice is re-read from Cybersource before its state is recorded. A
notification is acknowledged only after that is committed, so a failure makes Cybersource retry; a
redelivery of an accepted one changes nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from app import errors
from app.http.problems import problem_responses
from app.invoices.repository import Repository
from app.observability.logging import get_logger
from app.upstream_sync.notifications import WebhookInvalid, read_notification, verify

log = get_logger(__name__)
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.get("/cybersource", summary="Health check URL for Cybersource's webhook subscription")
async def webhook_health() -> dict[str, str]:
    return {"status": "ok"}


@router.post("/cybersource", responses=problem_responses(401, 503),
             summary="Receive a Cybersource invoicing notification (signed with v-c-signature)")
async def receive(request: Request,
                  v_c_signature: Annotated[str | None, Header(alias="v-c-signature")] = None) -> JSONResponse:
    settings = request.app.state.settings
    keys = settings.webhook_keys
    raw = await request.body()
    try:
        notification = read_notification(verify(raw, v_c_signature, keys))
    except WebhookInvalid as exc:
        log.warning("webhook.refused", reason=str(exc))
        raise errors.Unauthenticated(f"The notification was refused: {exc}.") from exc
    if notification.is_test or not notification.invoice_number:
        return JSONResponse({"status": "accepted", "action": "none"})
    profile = next((name for name, p in settings.merchant_profiles.items()
                    if p.merchant_id == notification.organization_id), "default")
    async with request.app.state.reads.connect() as conn:
        repo = Repository(conn)
        if await repo.webhook_receipt_exists(notification.dedup_key):
            return JSONResponse({"status": "duplicate", "action": "none"})
        seen = await repo.get_invoice(profile, notification.invoice_number)
    if seen is not None and seen["status"] is None:
        # Our create is still being recorded: let Cybersource redeliver once it is, so events stay in order.
        raise errors.ServiceUnavailable("The invoice's create is still being recorded; deliver again later.",
                                        headers={"Retry-After": "5"})
    service = request.app.state.service
    try:
        # Read before taking a connection: a slow Cybersource must not hold the pool.
        state = None if seen is None else await service.read_upstream(profile, notification.invoice_number)
        async with request.app.state.engine.begin() as conn:
            # Recorded with the new state, in one transaction: a failure leaves no receipt, so Cybersource's
            # retry is processed; a redelivery racing this one finds the receipt and changes nothing.
            if not await Repository(conn).record_webhook_receipt(
                    dedup_key=notification.dedup_key, event_type=notification.event_type,
                    invoice_number=notification.invoice_number, raw_body=raw.decode("utf-8", errors="replace")):
                return JSONResponse({"status": "duplicate", "action": "none"})
            if seen is None or state is None:
                log.info("webhook.unknown_invoice", invoice_number=notification.invoice_number)
                return JSONResponse({"status": "accepted", "action": "unknown invoice"})
            await service.record_observation(conn, profile, seen, state)
    except (errors.UpstreamUnavailable, errors.UpstreamRejected) as exc:
        raise errors.ServiceUnavailable("Cybersource could not confirm the invoice; retry later.",
                                        headers={"Retry-After": "30"}) from exc
    log.info("webhook.applied", event_type=notification.event_type, invoice_number=notification.invoice_number)
    return JSONResponse({"status": "accepted", "action": "refreshed"})
