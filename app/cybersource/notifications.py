"""Validate Cybersource invoicing webhook notifications (README, "Webhooks from Cybersource").

The `v-c-signature` header is `t=<ms>;keyId=<id>;sig=<base64 HMAC-SHA256>`; the HMAC key is the
base64-decoded digital signature key. What is signed is not settled publicly, so the candidates are tried
in order: `t.compact(payload)`, `t.compact(payloads)`, `t.raw body`. Timestamps more than 60 minutes old
or 5 minutes ahead are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

MAX_AGE_MS = 60 * 60 * 1000
MAX_SKEW_MS = 5 * 60 * 1000


class WebhookInvalid(Exception):
    """The notification's signature, timestamp or body is not acceptable."""


@dataclass(frozen=True, slots=True)
class Signed:
    """A notification whose signature verified: the parsed body and the exact text that was signed."""

    body: Any
    content: str


@dataclass(frozen=True, slots=True)
class Notification:
    event_type: str
    organization_id: str | None
    invoice_number: str | None
    dedup_key: str
    is_test: bool


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _parse_header(value: str) -> tuple[int, str, bytes]:
    parts: dict[str, str] = {}
    for part in value.strip().split(";"):
        name, sep, raw = part.partition("=")  # split once: base64 may end in '='
        if sep:
            parts[name.strip()] = raw.strip()
    try:
        return int(parts["t"]), parts["keyId"], base64.b64decode(parts["sig"], validate=True)
    except (KeyError, ValueError, binascii.Error) as exc:
        raise WebhookInvalid("malformed v-c-signature header") from exc


def verify(
    raw_body: bytes, header: str | None, keys: dict[str, bytes], now_ms: int | None = None
) -> Any:
    """Check the signature; return the parsed body."""
    return verify_signed(raw_body, header, keys, now_ms).body


def verify_signed(
    raw_body: bytes, header: str | None, keys: dict[str, bytes], now_ms: int | None = None
) -> Signed:
    """Check the signature; return the parsed body and the text the signature covers."""
    if not header:
        raise WebhookInvalid("missing v-c-signature header")
    timestamp, key_id, signature = _parse_header(header)
    key = keys.get(key_id)
    if key is None:
        raise WebhookInvalid("unknown keyId")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if timestamp > now_ms + MAX_SKEW_MS or now_ms - timestamp > MAX_AGE_MS:
        raise WebhookInvalid("timestamp outside the accepted window")
    try:
        body = json.loads(raw_body)
    except ValueError as exc:
        raise WebhookInvalid("body is not JSON") from exc
    candidates = [
        compact(body[m]) for m in ("payload", "payloads") if isinstance(body, dict) and m in body
    ]
    candidates.append(raw_body.decode("utf-8", errors="replace"))
    for message in candidates:
        mac = hmac.new(key, f"{timestamp}.{message}".encode(), hashlib.sha256).digest()
        if hmac.compare_digest(mac, signature):
            return Signed(body, message)
    raise WebhookInvalid("signature does not match")


def _data(body: dict[str, Any]) -> dict[str, Any]:
    payload = body.get("payload", body.get("payloads"))
    if isinstance(payload, list):
        payload = payload[0] if payload else {}
    if not isinstance(payload, dict):
        return {}
    data = payload.get("data", {})
    return data if isinstance(data, dict) else {}


def signed_organization(body: Any) -> str | None:
    """The merchant a notification is for, from the signed part only (the envelope is not signed)."""
    if not isinstance(body, dict):
        return None
    payload = body.get("payload", body.get("payloads"))
    if isinstance(payload, list):
        payload = payload[0] if payload else {}
    data = _data(body)
    organization = data.get("organizationID") or (
        payload.get("organizationId") if isinstance(payload, dict) else None
    )
    return str(organization) if organization else None


def read_notification(body: Any, signed_content: str | None = None) -> Notification:
    """The notification's fields. Its de-duplication key is the digest of what was signed: a replay
    with an altered envelope (notificationId, webhookId, padding) is the same notification."""
    if not isinstance(body, dict):
        raise WebhookInvalid("body is not a JSON object")
    payloads = body.get("payloads")
    is_test = isinstance(payloads, dict) and "testPayload" in payloads
    data = _data(body)
    # The signed data names the event; an envelope that disagrees with it is refused.
    event_type = str(data.get("eventType") or body.get("eventType") or "")
    if data.get("eventType") and body.get("eventType") and data["eventType"] != body["eventType"]:
        raise WebhookInvalid("envelope eventType disagrees with the signed data")
    signed = compact(body.get("payload", payloads)) if signed_content is None else signed_content
    dedup = hashlib.sha256(signed.encode()).hexdigest()
    return Notification(
        event_type=event_type,
        organization_id=signed_organization(body),
        invoice_number=data.get("invoiceNumber"),
        dedup_key=str(dedup),
        is_test=is_test,
    )
