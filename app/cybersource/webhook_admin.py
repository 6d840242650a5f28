"""Cybersource's webhook management APIs (WEBHOOKS.md section 5), for one merchant profile.

    admin = WebhookAdmin(client)                           # a CybersourceClient of the organisation
    key = await admin.create_signature_key(expiry_days=365)
    key.key_information.key_id, key.key_information.key.get_secret_value(), key.expires_at
    sub = await admin.create_subscription(url, event_types=INVOICING_EVENTS)
    await admin.set_status(sub.webhook_id, "ACTIVE")

- `POST /kms/egress/v2/keys-sym`: the digital signature key notifications are signed with (its
  secret is shown in this answer only; a new key replaces the old one for new notifications);
- `GET /notification-subscriptions/v2/products/{organizationId}`: what the organisation may
  subscribe to;
- `POST|GET /notification-subscriptions/v2/webhooks`, `GET|PATCH|DELETE .../webhooks/{id}`,
  `PUT .../webhooks/{id}/status`: the subscriptions;
- `POST /notification-subscriptions/v1/webhooks/{id}` (v1): Cybersource sends a test notification.

Calls are signed like every other (the organisation is the profile's merchant); errors are the
client's error tree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from app.cybersource.client import CybersourceClient, _segment
from app.cybersource.models import CybersourceModel, EmptyResponse, UpstreamResult

PRODUCT_ID = "customerInvoicing"
INVOICING_EVENTS = (
    "invoicing.customer.invoice.cancel",
    "invoicing.customer.invoice.overdue-reminder",
    "invoicing.customer.invoice.paid",
    "invoicing.customer.invoice.partial-payment",
    "invoicing.customer.invoice.partial-resend",
    "invoicing.customer.invoice.reminder",
    "invoicing.customer.invoice.send",
)
KEYS_PATH = "/kms/egress/v2/keys-sym"
WEBHOOKS_PATH = "/notification-subscriptions/v2/webhooks"
# What Cybersource's own plugin sends (its meaning is not documented: WEBHOOKS.md 5.1).
KEY_PERMISSIONS = "100"


class KeyInformation(CybersourceModel):
    provider: str | None = None
    tenant: str | None = None
    organization_id: str | None = None
    key_id: str
    key: SecretStr | None = None
    key_type: str | None = None
    status: str | None = None
    expiration_date: str | None = None


class SignatureKey(UpstreamResult):
    """A new digital signature key; `key` is shown here only."""

    submit_time_utc: str | None = None
    status: str | None = None
    key_information: KeyInformation

    @property
    def expires_at(self) -> datetime | None:
        text = self.key_information.expiration_date
        if not text:
            return None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None


class SubscribedProduct(CybersourceModel):
    product_id: str | None = None
    event_types: list[str] = Field(default_factory=list)


class WebhookSubscription(UpstreamResult):
    webhook_id: str
    organization_id: str | None = None
    products: list[SubscribedProduct] = Field(default_factory=list)
    webhook_url: str | None = None
    health_check_url: str | None = None
    status: str | None = None
    name: str | None = None
    description: str | None = None
    created_on: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, value: Any) -> Any:
        # The official sample subscribes with a flat productId/eventTypes; read it as `products`.
        if isinstance(value, dict) and "products" not in value and "productId" in value:
            return {
                **value,
                "products": [
                    {"productId": value["productId"], "eventTypes": value.get("eventTypes", [])}
                ],
            }
        return value

    @property
    def event_types(self) -> list[str]:
        return [event for product in self.products for event in product.event_types]


class WebhookSubscriptionList(UpstreamResult):
    """The list answer is a JSON array."""

    subscriptions: list[WebhookSubscription] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _array(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"subscriptions": value}
        return value


class EventTypeInfo(CybersourceModel):
    event_name: str
    display_name: str | None = None


class Product(CybersourceModel):
    product_id: str
    product_name: str | None = None
    event_types: list[EventTypeInfo] = Field(default_factory=list)


class ProductList(UpstreamResult):
    products: list[Product] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _array(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"products": value}
        return value


class SampleNotification(UpstreamResult):
    """What the test call answers: the sample notification it sent."""

    event_type: str | None = None
    webhook_id: str | None = None
    organization_id: str | None = None
    transaction_trace_id: str | None = None


class WebhookAdmin:
    """The management calls for the organisation of one merchant profile."""

    def __init__(self, client: CybersourceClient) -> None:
        self.client = client

    @property
    def organization_id(self) -> str:
        return self.client.merchant_id

    async def create_signature_key(self, *, expiry_days: int = 365) -> SignatureKey:
        org = self.organization_id
        body = {
            "clientRequestAction": "CREATE",
            "keyInformation": {
                "provider": "nrtd",
                "tenant": org,
                "keyType": "sharedSecret",
                "organizationId": org,
                "expiryDuration": str(expiry_days),
            },
        }
        headers = {"v-c-sender-organization-id": org, "v-c-permissions": KEY_PERMISSIONS}
        return await self.client.call("POST", KEYS_PATH, SignatureKey, body=body, headers=headers)

    async def products(self) -> ProductList:
        path = "/notification-subscriptions/v2/products/" + _segment(self.organization_id, "org")
        return await self.client.call("GET", path, ProductList)

    async def subscriptions(
        self, *, product_id: str | None = PRODUCT_ID
    ) -> WebhookSubscriptionList:
        query: list[tuple[str, str | int]] = [("organizationId", self.organization_id)]
        if product_id is not None:
            query.append(("productId", product_id))
        return await self.client.call("GET", WEBHOOKS_PATH, WebhookSubscriptionList, query=query)

    async def create_subscription(
        self,
        url: str,
        *,
        event_types: tuple[str, ...] | list[str] = INVOICING_EVENTS,
        name: str = "invoicing-gateway",
        health_check_url: str | None = None,
    ) -> WebhookSubscription:
        body = {
            "name": name,
            "description": "Invoicing notifications for invoicing-gateway",
            "organizationId": self.organization_id,
            "products": [{"productId": PRODUCT_ID, "eventTypes": list(event_types)}],
            "webhookUrl": url,
            "healthCheckUrl": health_check_url or url,
            "notificationScope": "SELF",
            "retryPolicy": {
                "algorithm": "ARITHMETIC",
                "firstRetry": 1,
                "interval": 1,
                "numberOfRetries": 3,
                "deactivateFlag": "false",
                "repeatSequenceCount": 0,
                "repeatSequenceWaitTime": 0,
            },
            "securityPolicy": {"securityType": "KEY", "proxyType": "external"},
        }
        return await self.client.call("POST", WEBHOOKS_PATH, WebhookSubscription, body=body)

    async def subscription(self, webhook_id: str) -> WebhookSubscription:
        return await self.client.call("GET", self._path(webhook_id), WebhookSubscription)

    async def set_status(
        self, webhook_id: str, status: Literal["ACTIVE", "INACTIVE"]
    ) -> WebhookSubscription:
        path = self._path(webhook_id) + "/status"
        body = {"status": status}
        return await self.client.call("PUT", path, WebhookSubscription, body=body)

    async def delete_subscription(self, webhook_id: str) -> EmptyResponse:
        return await self.client.call("DELETE", self._path(webhook_id), EmptyResponse)

    async def send_test(self, webhook_id: str) -> SampleNotification:
        path = "/notification-subscriptions/v1/webhooks/" + _segment(webhook_id, "webhook_id")
        return await self.client.call("POST", path, SampleNotification, body={})

    @staticmethod
    def _path(webhook_id: str) -> str:
        return f"{WEBHOOKS_PATH}/{_segment(webhook_id, 'webhook_id')}"
