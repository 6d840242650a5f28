"""Standard Webhooks signing (https://www.standardwebhooks.com): secrets and the three headers.

`webhook-id` is the message id (the same on every attempt, so receivers de-duplicate with it),
`webhook-timestamp` the attempt's Unix time in seconds, and `webhook-signature` a space-separated
list of `v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`: during a secret rotation's grace
period the old secret signs alongside the new one, and a receiver holding either verifies. The HMAC
is the reference library's own, the one receivers verify with.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32


def message_id(delivery_id: uuid.UUID, event_id: int | None) -> str:
    """`webhook-id`: `evt_<event id>` (the feed's id, the same for every subscription and attempt),
    or `ping_<delivery id>` for a test."""
    return f"ping_{delivery_id}" if event_id is None else f"evt_{event_id}"


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes, as the specification (and Svix) shows secrets."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signature_headers(
    message_id: str, body: str, secrets_in_use: list[str], *, now: datetime | None = None
) -> dict[str, str]:
    """The headers of one attempt, signed by every secret in use (newest first)."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    signatures = [Webhook(secret).sign(message_id, moment, body) for secret in secrets_in_use]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
