"""Validate Cybersource invoicing webhook notifications (README, "Webhooks from Cybersource").

The `v-c-signature` header is `t=<ms>;keyId=<id>;sig=<base64 HMAC-SHA256>`; the HMAC key is the
base64-decoded digital signature key. What is signed is not settled publicly, so the candidates are
tried in order: `t.compact(payload)`, `t.compact(payloads)`, `t.raw body`. Timestamps more than
60 minutes old or 5 minutes ahead are refused.

The header is checked before the body is parsed; the body is parsed by the caller's `parse` (the
facade passes its one JSON reader, with its size and depth limits), else by a parser here that makes
no float and refuses `NaN`. The fields a receiver acts on are typed: `invoiceNumber`, `eventType`
and the organisation are strings (or absent); any other JSON type is `NotificationFieldInvalid`,
naming the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

MAX_AGE_MS = 60 * 60 * 1000
MAX_SKEW_MS = 5 * 60 * 1000


class WebhookInvalid(Exception):
    """The notification's signature, timestamp or body is not acceptable."""


class NotificationFieldInvalid(Exception):
    """A validly signed notification whose field has a JSON type no notification has (a number, list
    or object where Cybersource sends a string)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Signed:
    """A notification whose signature verified: the parsed body and the exact text that was
    signed."""

    body: Any
    content: str


@dataclass(frozen=True, slots=True)
class Notification:
    event_type: str
    organization_id: str | None
    invoice_number: str | None
    dedup_key: str
    is_test: bool


def _as_signed(value: Any) -> Any:
    """Numbers as the signer's JSON.stringify wrote them (a double): only to rebuild the signed
    text."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _as_signed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_signed(item) for item in value]
    return value


def compact(value: Any) -> str:
    return json.dumps(_as_signed(value), separators=(",", ":"), ensure_ascii=False)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw_body: bytes) -> Any:
    """The body as JSON (numbers as int or Decimal); WebhookInvalid when it is not JSON."""
    try:
        return json.loads(raw_body, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise WebhookInvalid("body is not JSON") from exc


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
    raw_body: bytes,
    header: str | None,
    keys: dict[str, bytes],
    now_ms: int | None = None,
    *,
    parse: Callable[[bytes], Any] = parse_body,
) -> Signed:
    """Check the signature; return the parsed body and the text the signature covers.

    The header (present, well formed, known key, fresh timestamp) is checked first; only then is the
    body parsed, by `parse` (whatever it raises goes to the caller)."""
    if not header:
        raise WebhookInvalid("missing v-c-signature header")
    timestamp, key_id, signature = _parse_header(header)
    key = keys.get(key_id)
    if key is None:
        raise WebhookInvalid("unknown keyId")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if timestamp > now_ms + MAX_SKEW_MS or now_ms - timestamp > MAX_AGE_MS:
        raise WebhookInvalid("timestamp outside the accepted window")
    body = parse(raw_body)
    candidates = [
        compact(body[m]) for m in ("payload", "payloads") if isinstance(body, dict) and m in body
    ]
    candidates.append(raw_body.decode("utf-8", errors="replace"))
    for message in candidates:
        mac = hmac.new(key, f"{timestamp}.{message}".encode(), hashlib.sha256).digest()
        if hmac.compare_digest(mac, signature):
            return Signed(body, message)
    raise WebhookInvalid("signature does not match")


def _payload(body: dict[str, Any]) -> tuple[str, Any]:
    """The signed member's (first) item, and where it is: `payload` or `payloads[0]`."""
    name = "payload" if "payload" in body else "payloads"
    payload = body.get(name)
    if isinstance(payload, list):
        return f"{name}[0]", payload[0] if payload else {}
    return name, payload


def _data(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    where, payload = _payload(body)
    data = payload.get("data", {}) if isinstance(payload, dict) else {}
    return f"{where}.data", data if isinstance(data, dict) else {}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    return "an array" if isinstance(value, list) else "an object"


def _text(value: Any, field: str) -> str | None:
    """A string field: absent, null or empty is None; a number, boolean, array or object is
    refused."""
    if value is None or isinstance(value, str):
        return value or None
    raise NotificationFieldInvalid(field, f"must be a string, not {_json_type(value)}")


def signed_organization(body: Any) -> str | None:
    """The merchant a notification is for, from the signed part only (the envelope is not
    signed)."""
    if not isinstance(body, dict):
        return None
    where, payload = _payload(body)
    data_where, data = _data(body)
    organization = _text(data.get("organizationID"), f"{data_where}.organizationID")
    if organization is None and isinstance(payload, dict):
        organization = _text(payload.get("organizationId"), f"{where}.organizationId")
    return organization


def read_notification(body: Any, signed_content: str | None = None) -> Notification:
    """The notification's fields. Its de-duplication key is the digest of what was signed: a replay
    with an altered envelope (notificationId, webhookId, padding) is the same notification.

    WebhookInvalid when the body is no object or its envelope contradicts the signed data;
    NotificationFieldInvalid when a field it reads has another JSON type than a string."""
    if not isinstance(body, dict):
        raise WebhookInvalid("body is not a JSON object")
    payloads = body.get("payloads")
    is_test = isinstance(payloads, dict) and "testPayload" in payloads
    where, data = _data(body)
    # The signed data names the event; an envelope that disagrees with it is refused.
    signed_event = _text(data.get("eventType"), f"{where}.eventType")
    envelope_event = _text(body.get("eventType"), "eventType")
    if signed_event and envelope_event and signed_event != envelope_event:
        raise WebhookInvalid("envelope eventType disagrees with the signed data")
    signed = compact(body.get("payload", payloads)) if signed_content is None else signed_content
    dedup = hashlib.sha256(signed.encode()).hexdigest()
    return Notification(
        event_type=signed_event or envelope_event or "",
        organization_id=signed_organization(body),
        invoice_number=_text(data.get("invoiceNumber"), f"{where}.invoiceNumber"),
        dedup_key=str(dedup),
        is_test=is_test,
    )
