"""The one reader of JSON request bodies: limits first, then a parse that never makes a float.

Every body the facade takes (invoices, invoice settings, Cybersource's notifications) goes through
`read_json`: its size and nesting depth are checked before anything is parsed (a body nested 100,000
deep would otherwise exhaust the recursion limit), numbers become `int` or `Decimal` (an amount
written as the JSON number 2623.64 stays exactly that), and `NaN`/`Infinity` (not JSON) are refused.
Whatever makes a body unreadable is one answer: 400 `malformed_json`, saying what is wrong and
where.

`JsonBodyRoute` makes FastAPI's routes use it: their bodies arrive parsed this way, whatever the
Content-Type said (the routes take nothing but JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app import errors

# Cybersource's bodies are at most five levels deep; the facade's own, too.
MAX_DEPTH = 32
# A number whose decimal exponent is beyond this is no amount, rate or flag of any body we take.
MAX_EXPONENT = 100
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class _Unreadable(ValueError):
    def __init__(self, message: str, position: int | None = None, token: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.token = token


def _where(raw: bytes, position: int | None) -> dict[str, int]:
    if position is None:
        return {}
    before = raw[:position]
    line = before.count(b"\n") + 1
    column = position - (before.rfind(b"\n") + 1) + 1
    return {"line": line, "column": column, "position": position}


def _malformed(raw: bytes, message: str, position: int | None) -> errors.MalformedJson:
    where = _where(raw, position)
    at = f" at line {where['line']}, column {where['column']}" if where else ""
    return errors.MalformedJson(
        f"The body is not valid JSON: {message}{at}.",
        errors=[{"field": "body", "message": message, **where}],
    )


def _check_depth(raw: bytes, max_depth: int) -> None:
    """Nesting depth without parsing (strings, where brackets mean nothing, are skipped)."""
    depth = 0
    offset = 0
    for chunk in _STRINGS.split(raw):
        for bracket in _BRACKETS.finditer(chunk):
            if bracket.group() in (b"[", b"{"):
                depth += 1
                if depth > max_depth:
                    position = _original_position(raw, offset, bracket.start())
                    raise _Unreadable(f"nested deeper than {max_depth} levels", position)
            else:
                depth -= 1
        offset += len(chunk)


def _original_position(raw: bytes, stripped_offset: int, start: int) -> int:
    """Map an offset in the body without its strings back to the body."""
    target = stripped_offset + start
    seen = 0
    cursor = 0
    for match in _STRINGS.finditer(raw):
        kept = match.start() - cursor
        if seen + kept > target:
            break
        seen += kept
        cursor = match.end()
    return cursor + (target - seen)


def _number(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - json only hands over valid number text
        raise _Unreadable(f"{text} is not a number") from exc
    if abs(value.adjusted()) > MAX_EXPONENT:
        raise _Unreadable(f"the number {text} is out of range", token=text)
    return value


def _integer(text: str) -> int:
    if len(text) > MAX_EXPONENT:
        raise _Unreadable(f"the number {text[:20]}... is out of range")
    return int(text)


def _constant(name: str) -> Any:
    raise _Unreadable(f"{name} is not a JSON value", token=name)


def read_json(raw: bytes, *, max_bytes: int | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed body; raises `errors.MalformedJson` (400) or `errors.BodyTooLarge` (413)."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise errors.BodyTooLarge(
            f"The body has {len(raw)} bytes; this route takes at most {max_bytes}."
        )
    if not raw.strip():
        raise _malformed(raw, "the body is empty; a JSON object is expected", None)
    try:
        _check_depth(raw, max_depth)
        text = raw.decode("utf-8")
        return json.loads(text, parse_float=_number, parse_int=_integer, parse_constant=_constant)
    except _Unreadable as exc:
        position = exc.position
        if position is None and exc.token:  # json hands over the text, not where it stood
            found = raw.find(exc.token.encode("utf-8"))
            position = found if found >= 0 else None
        raise _malformed(raw, exc.message, position) from None
    except UnicodeDecodeError as exc:
        raise _malformed(raw, "the body is not UTF-8 text", exc.start) from None
    except json.JSONDecodeError as exc:
        position = len(text[: exc.pos].encode("utf-8"))
        raise _malformed(raw, exc.msg, position) from None
    except (ValueError, RecursionError) as exc:
        raise _malformed(raw, str(exc) or type(exc).__name__, None) from None


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class JsonBodyRoute(APIRoute):
    """A route whose JSON body is read by `read_json` before FastAPI validates it."""

    max_bytes: int | None = None

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def parse_first(request: Request) -> Response:
            raw = await request.body()
            parsed = read_json(raw, max_bytes=self.max_bytes)
            # FastAPI reads a body as JSON only when the Content-Type says so: say so.
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            scope = {**request.scope, "headers": [*headers, (b"content-type", b"application/json")]}
            parsed_request = Request(scope, request.receive)
            parsed_request._body = raw
            parsed_request._json = parsed
            return await handler(parsed_request)

        return parse_first


class SettingsBodyRoute(JsonBodyRoute):
    """Invoice settings carry a logo of up to 10,000,000 base64 characters (Cybersource's limit)."""

    max_bytes = 10_500_000
