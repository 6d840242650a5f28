"""Opaque pagination cursors: what a page hands out, and the one place that reads them back.

A cursor is the base64 of the last row's sort key. Reading one back checks every part against what
the database can hold (bigint ids, timestamps PostgreSQL accepts), so a forged cursor is a
400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

from app import errors

_BIGINT_MAX = 2**63 - 1
_ASCII_DIGITS = re.compile(r"^[0-9]{1,19}$")


def _invalid() -> errors.MalformedRequest:
    return errors.MalformedRequest("The cursor is not one this API handed out.")


def encode_cursor(*parts: Any) -> str:
    text = "|".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _parts(cursor: str, count: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _invalid() from exc
    if len(parts) != count:
        raise _invalid()
    return parts


def _bigint(text: str) -> int:
    if not _ASCII_DIGITS.match(text) or int(text) > _BIGINT_MAX:
        raise _invalid()
    return int(text)


def decode_ids(cursor: str, count: int) -> tuple[int, ...]:
    """A cursor of `count` bigint ids (an events position, an operations sequence number)."""
    return tuple(_bigint(part) for part in _parts(cursor, count))


def decode_time_and_id(cursor: str) -> tuple[datetime, int]:
    """A cursor of (created_at, id), as the invoice list hands out."""
    created, row_id = _parts(cursor, 2)
    try:
        timestamp = datetime.fromisoformat(created)
    except ValueError:
        raise _invalid() from None
    if timestamp.tzinfo is None:
        raise _invalid()
    try:  # the store compares in UTC: 9999-12-31T23:59-14:00 is beyond the years it can hold
        timestamp.astimezone(UTC)
    except OverflowError:
        raise _invalid() from None
    return timestamp, _bigint(row_id)


def decode_sort_cursor(cursor: str) -> tuple[str, str, int]:
    """A cursor of (sort name, the last row's sort value as text, its id), as sorted lists hand out;
    the caller reads the value by its sort (and refuses what it cannot read)."""
    sort, value, row_id = _parts(cursor, 3)
    if len(sort) > 20 or len(value) > 64:
        raise _invalid()
    return sort, value, _bigint(row_id)
