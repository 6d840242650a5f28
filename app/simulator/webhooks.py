"""Invoicing webhook notifications as WEBHOOKS.md describes them (sections 3, 4, 6, 8, 10).

Shape A (default):
`{"eventType","webhookId","productId","organizationId","eventDate","transactionTraceId",
"retryNumber","payload":{"data":{...},"organizationId"},"requestType"}`, compact JSON. Shape C
(switch):
`{"notificationId","retryNumber","eventType","eventDate","webhookId","payloads":[{...}]}`.
Signature: `v-c-signature: t=<ms>;keyId=<id>;sig=<base64 HMAC-SHA256(b64decode(secret),
f"{t}.{msg}")>` where msg is the compact `payload` (or `payloads`) member, or the raw body when so
configured.
Every attempt is rebuilt: fresh `t`, new trace id, `RETRY` request type and a higher retry count.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp

from app.simulator.config import WebhookConfig
from app.simulator.logs import webhook_log as log
from app.simulator.state import Invoice, iso_millis

PRODUCT_ID = "customerInvoicing"
USER_AGENT = "Vert.x-WebClient/3.9.8"  # what the published invoicing example shows (WEBHOOKS.md 3)


def compact(value: Any) -> str:
    """JavaScript's JSON.stringify for strings and integers: what Cybersource's own verifiers
    rebuild."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def webhook_signature(secret_b64: str, t_ms: int, message: str) -> str:
    key = base64.b64decode(secret_b64)
    return base64.b64encode(
        hmac.new(key, f"{t_ms}.{message}".encode(), hashlib.sha256).digest()
    ).decode()


def signature_header(t_ms: int, key_id: str, signature: str) -> str:
    return f"t={t_ms};keyId={key_id};sig={signature}"


def build_envelope(
    *,
    shape: str,
    event_type: str,
    webhook_id: str,
    organization_id: str,
    event_date: str,
    trace_id: str,
    retry_number: int,
    request_type: str,
    data: dict[str, str],
    notification_id: str,
) -> dict[str, Any]:
    item = {"data": data, "organizationId": organization_id}
    if shape == "payloads":
        return {
            "notificationId": notification_id,
            "retryNumber": retry_number,
            "eventType": event_type,
            "eventDate": event_date,
            "webhookId": webhook_id,
            "payloads": [item],
        }
    return {
        "eventType": event_type,
        "webhookId": webhook_id,
        "productId": PRODUCT_ID,
        "organizationId": organization_id,
        "eventDate": event_date,
        "transactionTraceId": trace_id,
        "retryNumber": retry_number,
        "payload": item,
        "requestType": request_type,
    }


def invoice_event_data(
    invoice: Invoice, event_type: str, settings: dict[str, Any], invoice_url: str
) -> dict[str, str]:
    """The `data` fields of the published invoicing example (all strings), filled from the
    invoice."""
    customer = invoice.content.get("customerInformation") or {}
    merchant = settings.get("merchantInformation") or {}
    address = merchant.get("addressDetails") or {}
    info = settings.get("invoiceSettingsInformation") or {}
    balance = format(invoice.balance, "f")
    amounts = invoice.amount_details
    fields: dict[str, Any] = {
        "invoiceNumber": invoice.id,
        "eventType": event_type,
        "organizationID": invoice.merchant_id,
        "currency": amounts.get("currency"),
        "invoiceBalance": balance,
        "balanceAmount": balance,
        "dueDate": invoice.info.get("dueDate"),
        "payerName": customer.get("name"),
        "emailTo": customer.get("email"),
        "invoiceUrl": invoice_url,
        "merchantName": merchant.get("name"),
        "merchantAddress": address.get("address1"),
        "merchantAddress2": address.get("address2"),
        "merchantCity": address.get("city"),
        "merchantState": address.get("state"),
        "merchantZip": address.get("postalCode"),
        "merchantPhone": merchant.get("phone"),
        "customMessage": info.get("customEmailMessage"),
        "emailLanguage": info.get("deliveryLanguage"),
        "subject": f"Invoice {invoice.id} from {merchant.get('name') or invoice.merchant_id}",
    }
    return {k: "" if v is None else str(v) for k, v in fields.items()}


class WebhookDispatcher:
    """Sends notifications in background tasks and keeps a log of every delivery and attempt.

    One invoice's notifications go out in the order of its events: each waits until the previous
    one's first attempt was answered (or failed). Retries run independently, as Cybersource's do.
    """

    def __init__(self, config: WebhookConfig | None) -> None:
        self.config = config
        self.deliveries: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Per invoice: set once the newest notification's first attempt is over.
        self._first_attempt_over: dict[str, asyncio.Event] = {}
        # Per delivery: where it goes and the key that signs it (the configured target, or a
        # subscription made through the management API with its organisation's current key).
        self._targets: dict[str, WebhookConfig] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})

    async def close(self) -> None:
        await self.cancel_all()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def reset(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.deliveries.clear()
        self._first_attempt_over.clear()
        self._targets.clear()

    def emit(
        self,
        event_type: str,
        organization_id: str,
        data: dict[str, str],
        target: WebhookConfig | None = None,
    ) -> dict[str, Any] | None:
        """Queue one notification (to `target`, else the configured webhook); returns its log
        record, or None when there is nowhere to send it."""
        config = target or self.config
        if config is None:
            return None
        record: dict[str, Any] = {
            "deliveryId": str(uuid.uuid4()),
            "eventType": event_type,
            "organizationId": organization_id,
            "invoiceNumber": data.get("invoiceNumber"),
            "url": config.url,
            "webhookId": config.webhook_id,
            "outcome": "pending",
            "eventDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "data": data,
            "attempts": [],
        }
        self.deliveries.append(record)
        self._targets[record["deliveryId"]] = config
        key = f"{config.url} {record['invoiceNumber']}"
        previous = self._first_attempt_over.get(key)
        own = self._first_attempt_over[key] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._deliver_in_turn(record, previous, own))
        self._tasks.add(task)  # keep a reference: the loop only holds weak ones
        task.add_done_callback(self._tasks.discard)
        return record

    def _attempt_request(
        self, record: dict[str, Any], retry_number: int
    ) -> tuple[bytes, dict[str, str], str]:
        config = self._targets[record["deliveryId"]]
        trace_id = str(uuid.uuid4())
        request_type = "NEW" if retry_number == 0 else "RETRY"
        envelope = build_envelope(
            shape=config.body_shape,
            event_type=record["eventType"],
            webhook_id=config.webhook_id,
            organization_id=record["organizationId"],
            event_date=record["eventDate"],
            trace_id=trace_id,
            retry_number=retry_number,
            request_type=request_type,
            data=record["data"],
            notification_id=record["deliveryId"],
        )
        body = compact(envelope)
        member = "payloads" if config.body_shape == "payloads" else "payload"
        message = body if config.sign == "raw-body" else compact(envelope[member])
        t_ms = int(time.time() * 1000)  # fresh for every attempt
        headers = {
            "Content-Type": "application/json",
            "v-c-signature": signature_header(
                t_ms, config.key_id, webhook_signature(config.secret, t_ms, message)
            ),
            "v-c-event-type": record["eventType"],
            "v-c-organization-id": record["organizationId"],
            "v-c-product-name": PRODUCT_ID,
            "v-c-request-type": request_type,
            "v-c-retry-count": str(retry_number),
            "v-c-transaction-trace-id": trace_id,
            "v-c-webhook-id": config.webhook_id,
        }
        return body.encode("utf-8"), headers, trace_id

    async def _deliver_in_turn(
        self, record: dict[str, Any], previous: asyncio.Event | None, own: asyncio.Event
    ) -> None:
        try:
            if previous is not None:
                await previous.wait()
            await self._deliver(record, first_attempt_over=own)
        finally:
            own.set()  # also when cancelled or failed: the next one must not wait forever

    async def _deliver(self, record: dict[str, Any], first_attempt_over: asyncio.Event) -> None:
        config = self._targets[record["deliveryId"]]
        if self._session is None:  # an app run without lifespan (in-process tests) starts it here
            await self.start()
        assert self._session is not None
        delays = (0.0, *config.retry_delays)
        for retry_number, delay in enumerate(delays):
            if delay:
                await asyncio.sleep(delay)
            body, headers, trace_id = self._attempt_request(record, retry_number)
            attempt: dict[str, Any] = {
                "retryNumber": retry_number,
                "requestType": headers["v-c-request-type"],
                "transactionTraceId": trace_id,
                "sentAt": iso_millis(datetime.now(UTC)),
                "signature": headers["v-c-signature"],
            }
            started = time.perf_counter()
            try:
                timeout = aiohttp.ClientTimeout(total=config.timeout_s)
                async with self._session.post(
                    config.url, data=body, headers=headers, timeout=timeout
                ) as resp:
                    await resp.read()
                    attempt["status"] = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                attempt["error"] = f"{type(exc).__name__}: {exc}"
            attempt["durationMs"] = round((time.perf_counter() - started) * 1000, 1)
            record["attempts"].append(attempt)
            first_attempt_over.set()
            delivered = 200 <= attempt.get("status", 0) < 300
            log.info(
                "webhook attempt",
                event_type=record["eventType"],
                invoice=record["invoiceNumber"],
                retry=retry_number,
                status=attempt.get("status"),
                error=attempt.get("error"),
            )
            if delivered:
                record["outcome"] = "delivered"
                return
        record["outcome"] = "failed"
        log.warning(
            "webhook delivery failed",
            event_type=record["eventType"],
            invoice=record["invoiceNumber"],
            attempts=len(record["attempts"]),
        )
