"""Setting up Cybersource's invoicing webhooks for the facade:
`invoicing-gateway cybersource-webhooks`.

`setup` creates a digital signature key and the `customerInvoicing` subscription for a URL (reusing
one that already points there, and activating it), and returns what the settings need: the key's id,
its secret and its expiry. Cybersource shows a key's secret only when it creates it, so every
`setup` and `rotate` creates a key; creating one makes it the key new notifications are signed with.
`rotate` keeps the key in use accepted alongside the new one (`CYBERSOURCE_WEBHOOK_PREVIOUS_KEYS`),
so notifications already signed with it, and their retries, still validate while the new settings
roll out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.cybersource.webhook_admin import WebhookAdmin, WebhookSubscription
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class WebhookKeySettings:
    """The settings that let the facade validate notifications signed with a key."""

    key_id: str
    expires_at: datetime | None
    secret: str = field(repr=False)
    previous_keys: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def variables(self) -> dict[str, str]:
        values = {
            "CYBERSOURCE_WEBHOOK_KEY_ID": self.key_id,
            "CYBERSOURCE_WEBHOOK_SECRET": self.secret,
            "CYBERSOURCE_WEBHOOK_KEY_EXPIRES_AT": _iso(self.expires_at),
        }
        if self.previous_keys:
            values["CYBERSOURCE_WEBHOOK_PREVIOUS_KEYS"] = json.dumps(
                self.previous_keys, separators=(",", ":")
            )
        return values


@dataclass(frozen=True, slots=True)
class SetupOutcome:
    key: WebhookKeySettings
    subscription: WebhookSubscription
    reused: bool


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.isoformat().replace("+00:00", "Z")


async def new_key(admin: WebhookAdmin, expiry_days: int) -> WebhookKeySettings:
    created = await admin.create_signature_key(expiry_days=expiry_days)
    info = created.key_information
    if info.key is None:
        raise ValueError("Cybersource created a key but sent no secret")
    return WebhookKeySettings(info.key_id, created.expires_at, info.key.get_secret_value())


async def find_subscription(admin: WebhookAdmin, url: str) -> WebhookSubscription | None:
    listed = (await admin.subscriptions()).subscriptions
    return next((sub for sub in listed if sub.webhook_url == url), None)


async def setup(admin: WebhookAdmin, url: str, *, expiry_days: int) -> SetupOutcome:
    """The key first (Cybersource wants one before a subscription), then the subscription,
    active."""
    key = await new_key(admin, expiry_days)
    subscription = await find_subscription(admin, url)
    reused = subscription is not None
    if subscription is None:
        subscription = await admin.create_subscription(url)
    if (subscription.status or "").upper() != "ACTIVE":
        # Cybersource activates it after its health check answered; the status call does it now.
        subscription = await admin.set_status(subscription.webhook_id, "ACTIVE")
    return SetupOutcome(key, subscription, reused)


async def rotate(
    admin: WebhookAdmin, settings: Settings, *, expiry_days: int
) -> WebhookKeySettings:
    """A new key; the one in use now stays accepted (its secret from the current settings)."""
    key = await new_key(admin, expiry_days)
    current: dict[str, Any] = {
        "key_id": settings.cybersource_webhook_key_id,
        "secret": settings.cybersource_webhook_secret.get_secret_value(),
    }
    if settings.cybersource_webhook_key_expires_at is not None:
        current["expires_at"] = _iso(settings.cybersource_webhook_key_expires_at)
    return WebhookKeySettings(key.key_id, key.expires_at, key.secret, previous_keys=[current])


async def resolve(admin: WebhookAdmin, *, url: str | None, webhook_id: str | None) -> str:
    """The subscription named by id, or by its URL."""
    if webhook_id:
        return webhook_id
    assert url is not None
    found = await find_subscription(admin, url)
    if found is None:
        raise LookupError(f"no invoicing webhook subscription points at {url}")
    return found.webhook_id
