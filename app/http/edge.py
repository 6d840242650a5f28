"""What every request and answer passes at the edge of the app: the body limit and the security
headers.

The body limit is checked before anything reads or parses the body, and before authentication: a
`Content-Length` above the limit is answered 413 at once, and a body sent without one (chunked) is
counted as it arrives and cut off at the limit. Webhooks get a smaller limit of their own.

Every answer carries `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, frame
protection, `Cache-Control: no-store` (invoice bodies and errors must not sit in a shared cache) and
a Content-Security-Policy that allows nothing (JSON needs none). Swagger UI's page sets its own,
narrower policy (`app/http/docs.py`); its static assets may be cached.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PROBLEM_JSON, PROBLEM_TYPE_BASE

WEBHOOK_PREFIX = "/v1/webhooks/"
STATIC_PREFIX = "/static/"
API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
NO_STORE = (b"cache-control", b"no-store")


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, "Request body too large")


def _too_large_response(limit: int) -> tuple[Message, Message]:
    body = json.dumps(
        {
            "type": PROBLEM_TYPE_BASE + "body_too_large",
            "title": "The body is too large",
            "status": 413,
            "code": "body_too_large",
            "detail": f"The request body exceeds {limit} bytes.",
        }
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class EdgeMiddleware:
    """The body limit and the security headers (plain ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, webhook_max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.webhook_max_body_bytes = webhook_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = (
            self.webhook_max_body_bytes if path.startswith(WEBHOOK_PREFIX) else self.max_body_bytes
        )
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await self._refuse(send, limit)
                    return
                break
        received = 0
        refused = False
        extra = COMMON_HEADERS if path.startswith(STATIC_PREFIX) else [*COMMON_HEADERS, NO_STORE]

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise BodyTooLarge()
            return message

        async def send_with_headers(message: Message) -> None:
            if refused:  # the app answered the cut-off body somehow: answer 413 instead, once
                if message["type"] == "http.response.start":
                    await self._refuse(send, limit)
                return
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [header for header in extra if header[0] not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", API_CSP))
                message["headers"] = headers
            await send(message)

        await self.app(scope, counted_receive, send_with_headers)

    async def _refuse(self, send: Send, limit: int) -> None:
        start, body = _too_large_response(limit)
        start["headers"] = [
            *start["headers"],
            *COMMON_HEADERS,
            NO_STORE,
            (b"content-security-policy", API_CSP),
        ]
        await send(start)
        await send(body)
