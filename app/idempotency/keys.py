"""The Idempotency-Key header (draft-ietf-httpapi-idempotency-key-header) and the request
fingerprint."""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Any

from app import errors

MAX_KEY_LENGTH = 255
_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,255}$")  # visible ASCII but `"` and `\`
_SF_STRING = re.compile(r'^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$')
REPLAYED_HEADER = "Idempotent-Replayed"


def parse_idempotency_key(value: str | None) -> str:
    """Accept the draft's structured-field string (`"abc"`) and a bare token (`abc`): the same
    key."""
    if value is None or not value.strip():
        raise errors.IdempotencyKeyMissing(
            "Every POST, PUT and PATCH needs an Idempotency-Key header (for example a UUID) "
            "so that a retry never applies the request twice."
        )
    value = value.strip()
    quoted = _SF_STRING.match(value)
    key = re.sub(r"\\(.)", r"\1", quoted.group(1)) if quoted else value
    if not key or len(key) > MAX_KEY_LENGTH or (not quoted and not _TOKEN.match(key)):
        raise errors.IdempotencyKeyInvalid(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters, bare or as a "
            "quoted string."
        )
    return key


def _decimal_text(value: Any) -> str:
    """A number the JSON reader made a Decimal, as the text it is sent upstream with (`1.50` stays
    `"1.50"`, `2.25e1` is `"22.5"`): what Cybersource receives is what is compared."""
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    raise TypeError(f"a {type(value).__name__} is not part of a JSON body")


def fingerprint(method: str, path: str, body: Any, *, scope: str = "") -> str:
    """Hash of the request's meaning: method, path, merchant scope and the canonical JSON body."""
    canonical = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_decimal_text
    )
    return hashlib.sha256(f"{method.upper()}\n{path}\n{scope}\n{canonical}".encode()).hexdigest()
