"""Cybersource's webhook management APIs as WEBHOOKS.md section 5 describes them (and section 8's
checklist): digital signature keys, the products an organisation may subscribe to, subscriptions
with a status, and the test notification.

- `POST /kms/egress/v2/keys-sym`: a fresh key id and a random 32-byte secret (base64), shown once;
  the organisation's newest key signs its notifications from then on (an older one signs nothing
  more).
- `GET /notification-subscriptions/v2/products/{organizationId}`: `customerInvoicing` and its
  events.
- `POST|GET /notification-subscriptions/v2/webhooks`, `GET|PATCH|DELETE .../{webhookId}`,
  `PUT .../{webhookId}/status`: subscriptions start `INACTIVE`; a health probe
  (`GET healthCheckUrl`, else `webhookUrl`) that answers 2xx makes them `ACTIVE`, and so does the
  status call. Only an ACTIVE subscription that lists the event type gets a notification.
- `POST /notification-subscriptions/v1/webhooks/{webhookId}`: send the test notification (`payloads`
  with `testPayload`), signed like every notification, and answer with it.

Calls are authenticated like the invoicing API; an organisation is the authenticated merchant, and a
call naming another organisation is refused. Plain `http` URLs are accepted (Cybersource wants
https; locally the facade listens on http).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from starlette.types import Receive, Scope, Send

from app.cybersource.signing import SignatureInvalid
from app.simulator.auth import request_target
from app.simulator.config import WebhookConfig
from app.simulator.logs import webhook_log as log
from app.simulator.routes import JSON_HEADERS, _answer, _read_body
from app.simulator.state import iso_millis, utc_now
from app.simulator.views import AUTH_FAILED_BODY, error_body, submit_time
from app.simulator.webhooks import PRODUCT_ID, compact, signature_header, webhook_signature

if TYPE_CHECKING:
    from app.simulator.app import Simulator

INVOICING_EVENTS = (
    "invoicing.customer.invoice.cancel",
    "invoicing.customer.invoice.overdue-reminder",
    "invoicing.customer.invoice.paid",
    "invoicing.customer.invoice.partial-payment",
    "invoicing.customer.invoice.partial-resend",
    "invoicing.customer.invoice.reminder",
    "invoicing.customer.invoice.send",
)
TEST_MESSAGE = "This is a test notification from the Cybersource simulator."
PROBE_TIMEOUT_S = 5.0


class Refused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass
class SignatureKey:
    key_id: str
    organization_id: str
    expires_at: datetime
    secret: str = field(repr=False)


@dataclass
class Subscription:
    webhook_id: str
    organization_id: str
    name: str | None
    description: str | None
    event_types: list[str]
    webhook_url: str
    health_check_url: str | None
    notification_scope: str
    retry_policy: dict[str, Any]
    security_policy: dict[str, Any]
    created_on: datetime
    status: str = "INACTIVE"

    def view(self) -> dict[str, Any]:
        return {
            "webhookId": self.webhook_id,
            "organizationId": self.organization_id,
            "products": [{"productId": PRODUCT_ID, "eventTypes": list(self.event_types)}],
            "webhookUrl": self.webhook_url,
            "healthCheckUrl": self.health_check_url,
            "status": self.status,
            "name": self.name,
            "description": self.description,
            "retryPolicy": self.retry_policy,
            "securityPolicy": self.security_policy,
            "createdOn": iso_millis(self.created_on),
            "notificationScope": self.notification_scope,
        }

    def retry_delays(self) -> tuple[float, ...]:
        """Seconds before each retry, from the retry policy (WEBHOOKS.md 6.2; minutes there)."""
        policy = self.retry_policy
        first = float(policy.get("firstRetry", 1))
        interval = float(policy.get("interval", 1))
        count = int(policy.get("numberOfRetries", 3))
        geometric = str(policy.get("algorithm", "ARITHMETIC")).upper() == "GEOMETRIC"
        at = [
            first * interval ** (n - 1) if geometric else first + interval * (n - 1)
            for n in range(1, count + 1)
        ]
        return tuple(60.0 * (b - a) for a, b in zip([0.0, *at], at, strict=False))


class Notifications:
    """Keys and subscriptions per organisation (in memory, like everything of the simulator)."""

    def __init__(self) -> None:
        self.keys: dict[str, list[SignatureKey]] = {}
        self.subscriptions: dict[str, Subscription] = {}

    def current_key(self, organization_id: str) -> SignatureKey | None:
        keys = self.keys.get(organization_id)
        return keys[-1] if keys else None

    def targets(self, organization_id: str, event_type: str) -> list[WebhookConfig]:
        """Where a notification of the organisation goes, each signed with its current key."""
        key = self.current_key(organization_id)
        if key is None:
            return []
        return [
            WebhookConfig(
                url=sub.webhook_url,
                key_id=key.key_id,
                secret=key.secret,
                webhook_id=sub.webhook_id,
                retry_delays=sub.retry_delays(),
            )
            for sub in self.subscriptions.values()
            if sub.organization_id == organization_id
            and sub.status == "ACTIVE"
            and event_type in sub.event_types
        ]

    def reset(self) -> None:
        self.keys.clear()
        self.subscriptions.clear()


def _event_types(body: dict[str, Any]) -> list[str]:
    """Both body forms (and a mix): `products[].eventTypes`, or a flat `productId` +
    `eventTypes`."""
    found: list[str] = []
    for product in body.get("products") or []:
        if isinstance(product, dict) and product.get("productId") == PRODUCT_ID:
            found += [str(e) for e in product.get("eventTypes") or []]
    if body.get("productId") == PRODUCT_ID or (body.get("eventTypes") and not found):
        found += [str(e) for e in body.get("eventTypes") or []]
    unknown = sorted(set(found) - set(INVOICING_EVENTS))
    if not found or unknown:
        raise Refused(400, "INVALID_DATA", f"eventTypes must be invoicing events; not {unknown}")
    return list(dict.fromkeys(found))


def _url(value: Any, name: str) -> str:
    parts = urlsplit(str(value or ""))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(400, "INVALID_DATA", f"{name} must be an http(s) URL")
    return str(value)


class NotificationApi:
    """ASGI app for /kms/ and /notification-subscriptions/: authenticate, dispatch, answer."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.state = sim.notifications
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        target = request_target(scope.get("raw_path"), path, scope["query_string"])
        try:
            merchant = self.sim.authenticator.authenticate(method, target, scope["headers"], body)
        except SignatureInvalid as exc:
            log.warning("authentication failed", reason=exc.reason, method=method, path=path)
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        *JSON_HEADERS,
                        (b"content-length", str(len(AUTH_FAILED_BODY)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": AUTH_FAILED_BODY})
            return
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise Refused(400, "INVALID_DATA", "the body must be a JSON object")
            status, payload = self._dispatch(method, path, merchant, data, query, headers)
        except Refused as exc:
            status = exc.status
            payload = error_body(utc_now(), "BADREQUEST", exc.reason, exc.message)
            if exc.status == 404:
                payload = error_body(utc_now(), "NOTFOUND", "NOT_FOUND", exc.message)
        except ValueError:
            status, payload = 400, error_body(utc_now(), "BADREQUEST", "INVALID_DATA", "bad JSON")
        await _answer(send, status, payload)

    def _dispatch(
        self,
        method: str,
        path: str,
        merchant: str,
        body: dict[str, Any],
        query: dict[str, str],
        headers: dict[str, str],
    ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts == ["kms", "egress", "v2", "keys-sym"] and method == "POST":
            return self.create_key(merchant, body, headers)
        products = parts[:3] == ["notification-subscriptions", "v2", "products"]
        if products and len(parts) == 4 and method == "GET":
            return self.products(merchant, parts[3])
        if parts[:3] == ["notification-subscriptions", "v2", "webhooks"]:
            rest = parts[3:]
            if not rest and method == "POST":
                return self.create_subscription(merchant, body)
            if not rest and method == "GET":
                return self.list_subscriptions(merchant, query)
            if len(rest) == 1 and method in ("GET", "PATCH", "DELETE"):
                return self.one_subscription(method, merchant, rest[0], body)
            if len(rest) == 2 and rest[1] == "status" and method == "PUT":
                return self.set_status(merchant, rest[0], body)
        test = parts[:3] == ["notification-subscriptions", "v1", "webhooks"]
        if test and len(parts) == 4 and method == "POST":
            return self.send_test(merchant, parts[3])
        raise Refused(404, "NOT_FOUND", "Resource not found.")

    @staticmethod
    def _same_org(merchant: str, organization_id: Any) -> str:
        if organization_id not in (None, merchant):
            raise Refused(403, "FORBIDDEN", "organizationId is not the authenticated organisation")
        return merchant

    # --- keys and products ---

    def create_key(
        self, merchant: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any]:
        sender = headers.get("v-c-sender-organization-id")
        if not sender:
            raise Refused(400, "MISSING_FIELD", "v-c-sender-organization-id is required")
        self._same_org(merchant, sender)
        info = body.get("keyInformation") or {}
        if body.get("clientRequestAction") != "CREATE" or info.get("keyType") != "sharedSecret":
            raise Refused(400, "INVALID_DATA", "expected CREATE of a sharedSecret key")
        self._same_org(merchant, info.get("organizationId"))
        days = int(str(info.get("expiryDuration") or "365"))
        now = utc_now()
        key = SignatureKey(
            key_id=str(uuid.uuid4()),
            organization_id=merchant,
            expires_at=now + timedelta(days=days),
            secret=base64.b64encode(secrets.token_bytes(32)).decode(),
        )
        self.state.keys.setdefault(merchant, []).append(key)
        log.info("signature key created", organization=merchant, key_id=key.key_id)
        return 201, {
            "submitTimeUtc": submit_time(now),
            "status": "SUCCESS",
            "keyInformation": {
                "provider": info.get("provider", "nrtd"),
                "tenant": info.get("tenant", merchant),
                "organizationId": merchant,
                "keyId": key.key_id,
                "key": key.secret,
                "keyType": "sharedSecret",
                "status": "active",
                "expirationDate": key.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    def products(self, merchant: str, organization_id: str) -> tuple[int, Any]:
        self._same_org(merchant, organization_id)
        events = [
            {
                "eventName": name,
                "displayName": name.rsplit(".", 1)[-1],
                "frequency": "ALL",
                "timeSensitivity": False,
                "payloadEncryption": False,
            }
            for name in INVOICING_EVENTS
        ]
        return 200, [{"productId": PRODUCT_ID, "productName": "Invoicing", "eventTypes": events}]

    # --- subscriptions ---

    def _subscription(self, merchant: str, webhook_id: str) -> Subscription:
        sub = self.state.subscriptions.get(webhook_id)
        if sub is None or sub.organization_id != merchant:
            raise Refused(404, "NOT_FOUND", "Webhook subscription not found.")
        return sub

    def create_subscription(self, merchant: str, body: dict[str, Any]) -> tuple[int, Any]:
        org = self._same_org(merchant, body.get("organizationId"))
        if self.state.current_key(org) is None:
            raise Refused(400, "INVALID_DATA", "create a digital signature key first")
        health = body.get("healthCheckUrl")
        sub = Subscription(
            webhook_id=str(uuid.uuid4()),
            organization_id=org,
            name=body.get("name"),
            description=body.get("description"),
            event_types=_event_types(body),
            webhook_url=_url(body.get("webhookUrl"), "webhookUrl"),
            health_check_url=None if health is None else _url(health, "healthCheckUrl"),
            notification_scope=str(body.get("notificationScope") or "DESCENDANTS"),
            retry_policy=dict(body.get("retryPolicy") or {}),
            security_policy=dict(body.get("securityPolicy") or {}),
            created_on=utc_now(),
        )
        self.state.subscriptions[sub.webhook_id] = sub
        self._probe(sub)
        return 201, sub.view()

    def list_subscriptions(self, merchant: str, query: dict[str, str]) -> tuple[int, Any]:
        org = self._same_org(merchant, query.get("organizationId"))
        product, event = query.get("productId"), query.get("eventType")
        return 200, [
            sub.view()
            for sub in self.state.subscriptions.values()
            if sub.organization_id == org
            and product in (None, PRODUCT_ID)
            and (event is None or event in sub.event_types)
        ]

    def one_subscription(
        self, method: str, merchant: str, webhook_id: str, body: dict[str, Any]
    ) -> tuple[int, Any]:
        sub = self._subscription(merchant, webhook_id)
        if method == "DELETE":
            del self.state.subscriptions[webhook_id]
            return 204, None
        if method == "PATCH":
            self._same_org(merchant, body.get("organizationId"))
            if "webhookUrl" in body:
                sub.webhook_url = _url(body["webhookUrl"], "webhookUrl")
            if "healthCheckUrl" in body:
                sub.health_check_url = _url(body["healthCheckUrl"], "healthCheckUrl")
            if "products" in body or "eventTypes" in body:
                sub.event_types = _event_types(body)
            for name, attribute in (("name", "name"), ("description", "description")):
                if name in body:
                    setattr(sub, attribute, body[name])
            sub.status = "INACTIVE"  # checked again, as after a create
            self._probe(sub)
        return 200, sub.view()

    def set_status(self, merchant: str, webhook_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        sub = self._subscription(merchant, webhook_id)
        status = body.get("status")
        if status not in ("ACTIVE", "INACTIVE"):
            raise Refused(400, "INVALID_DATA", "status must be ACTIVE or INACTIVE")
        sub.status = str(status)
        return 200, sub.view()

    # --- the health probe and the test notification ---

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _probe(self, sub: Subscription) -> None:
        async def probe() -> None:
            url = sub.health_check_url or sub.webhook_url
            timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(url, timeout=timeout) as response,
                ):
                    healthy = 200 <= response.status < 300
            except (aiohttp.ClientError, TimeoutError):
                healthy = False
            if healthy and sub.status == "INACTIVE":
                sub.status = "ACTIVE"
            log.info("health probe", webhook_id=sub.webhook_id, url=url, healthy=healthy)

        self._spawn(probe())

    def send_test(self, merchant: str, webhook_id: str) -> tuple[int, Any]:
        sub = self._subscription(merchant, webhook_id)
        key = self.state.current_key(merchant)
        if key is None:
            raise Refused(400, "INVALID_DATA", "the organisation has no digital signature key")
        now = utc_now()
        sample: dict[str, Any] = {
            "eventDate": now.strftime("%Y-%m-%dT%H:%M:%S"),
            "eventType": sub.event_types[0],
            "organizationId": merchant,
            "payloads": {"testPayload": {"message": TEST_MESSAGE}},
            "productId": PRODUCT_ID,
            "requestType": "NEW",
            "retryNumber": "0",
            "transactionTraceId": str(uuid.uuid4()),
            "webhookId": sub.webhook_id,
        }
        record: dict[str, Any] = {
            "deliveryId": str(uuid.uuid4()),
            "eventType": sample["eventType"],
            "organizationId": merchant,
            "invoiceNumber": None,
            "url": sub.webhook_url,
            "webhookId": sub.webhook_id,
            "test": True,
            "outcome": "pending",
            "eventDate": sample["eventDate"],
            "data": {},
            "attempts": [],
        }
        self.sim.webhooks.deliveries.append(record)

        async def deliver() -> None:
            t_ms = int(utc_now().timestamp() * 1000)
            sig = webhook_signature(key.secret, t_ms, compact(sample["payloads"]))
            headers: dict[str, str] = {
                "Content-Type": "application/json",
                "v-c-signature": signature_header(t_ms, key.key_id, sig),
                "v-c-event-type": str(sample["eventType"]),
                "v-c-organization-id": merchant,
                "v-c-product-name": PRODUCT_ID,
                "v-c-request-type": "NEW",
                "v-c-retry-count": "0",
                "v-c-transaction-trace-id": str(sample["transactionTraceId"]),
                "v-c-webhook-id": sub.webhook_id,
            }
            attempt: dict[str, Any] = {"retryNumber": 0, "signature": headers["v-c-signature"]}
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(
                        sub.webhook_url,
                        data=compact(sample).encode(),
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S * 2),
                    ) as response,
                ):
                    attempt["status"] = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                attempt["error"] = type(exc).__name__
            record["attempts"].append(attempt)
            ok = 200 <= attempt.get("status", 0) < 300
            record["outcome"] = "delivered" if ok else "failed"

        self._spawn(deliver())
        return 201, sample
