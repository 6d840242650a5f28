"""When the Cybersource webhook keys expire, and the warnings from 30 days before.

Cybersource creates a digital signature key with an expiry (a year is usual) and then signs with it
until that day; after it, notifications stop validating. The facade knows each key's expiry from its
settings (`CYBERSOURCE_WEBHOOK_KEY_EXPIRES_AT`, and `expires_at` in
`CYBERSOURCE_WEBHOOK_PREVIOUS_KEYS`, both printed by
`invoicing-gateway cybersource-webhooks setup`/`rotate`) and says so three ways: the gauge
`igw_cybersource_webhook_key_days_left{key_id}`, a log warning (at most once a day per key), and a
`cybersourceWebhookKeys` detail in `/readyz` (which stays 200: an expiring key is no reason to take
a pod out of service).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Gauge

from app.observability.logging import get_logger
from app.settings import Settings

log = get_logger(__name__)

WARN_DAYS = 30
LOG_EVERY_SECONDS = 24 * 3600
KEY_DAYS_LEFT = Gauge(
    "igw_cybersource_webhook_key_days_left",
    "Days until a Cybersource webhook signature key expires (negative: expired)",
    ["key_id"],
)


@dataclass(frozen=True, slots=True)
class KeyExpiry:
    key_id: str
    expires_at: datetime
    days_left: float

    @property
    def warning(self) -> str | None:
        if self.days_left < 0:
            return "expired: notifications signed with it no longer validate"
        if self.days_left <= WARN_DAYS:
            return (
                f"expires in {math.floor(self.days_left)} days: run "
                "`invoicing-gateway cybersource-webhooks rotate`"
            )
        return None


def key_expiries(settings: Settings, now: datetime | None = None) -> list[KeyExpiry]:
    """Every webhook key whose expiry the settings name."""
    now = now or datetime.now(UTC)
    dated = [(settings.cybersource_webhook_key_id, settings.cybersource_webhook_key_expires_at)]
    dated += [(key.key_id, key.expires_at) for key in settings.cybersource_webhook_previous_keys]
    expiries = []
    for key_id, expires_at in dated:
        if expires_at is None:
            continue
        when = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        expiries.append(KeyExpiry(key_id, when, (when - now).total_seconds() / 86400))
    return expiries


class WebhookKeyMonitor:
    """Registered with the API and the relay's probe app: /readyz and /metrics ask it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._logged: dict[str, float] = {}

    def check(self) -> list[KeyExpiry]:
        """Update the gauge; log a warning for a key close to its expiry (once a day per key)."""
        expiries = key_expiries(self.settings)
        now = time.monotonic()
        for expiry in expiries:
            KEY_DAYS_LEFT.labels(expiry.key_id).set(round(expiry.days_left, 2))
            warning = expiry.warning
            last = self._logged.get(expiry.key_id)
            if warning is not None and (last is None or now - last >= LOG_EVERY_SECONDS):
                self._logged[expiry.key_id] = now
                log.warning(
                    "cybersource.webhook_key_expiring",
                    key_id=expiry.key_id,
                    expires_at=expiry.expires_at.isoformat(),
                    days_left=round(expiry.days_left, 1),
                    detail=warning,
                )
        return expiries

    def readiness_detail(self) -> list[dict[str, object]]:
        """The keys that need attention, for /readyz (empty when none does)."""
        return [
            {
                "keyId": expiry.key_id,
                "expiresAt": expiry.expires_at.isoformat(),
                "daysLeft": math.floor(expiry.days_left),
                "warning": expiry.warning,
            }
            for expiry in self.check()
            if expiry.warning is not None
        ]
