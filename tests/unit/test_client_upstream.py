"""A real local aiohttp server standing in for Cybersource, for the client tests (no tests of its
own).

It records every request (method, request target as received, headers, body bytes), verifies its
authentication with the same verifier the simulator uses (HTTP Signature or JWT), and answers either
with the next scripted reply or with the spec sample of the route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from app.cybersource.signing import (
    SignatureInvalid,
    VerificationKey,
    decode_secret,
    verify_http_signature,
    verify_jwt,
)
from app.settings import MerchantProfile

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "cybersource" / "samples"

MERCHANT = "acme_invoicing_test"
KEY_ID = "5f0c7a2e-3b1d-4c8e-9a6f-0123456789ab"
SECRET = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
PORTFOLIO = "acme_portfolio"
META_KEY_ID = "6a1d8b3f-4c2e-4d9f-8b7a-123456789abc"
META_SECRET = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="

HTTP_KEY = VerificationKey(
    key_id=KEY_ID, merchant_ids=frozenset({MERCHANT}), secret=decode_secret(SECRET)
)
META_KEY = VerificationKey(
    key_id=META_KEY_ID,
    merchant_ids=frozenset({MERCHANT}),
    secret=decode_secret(META_SECRET),
    portfolio_id=PORTFOLIO,
)


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def sample_body(name: str) -> Any:
    return sample(name)["body"]


def profile(base_url: str, **overrides: Any) -> MerchantProfile:
    values: dict[str, Any] = {
        "name": "default",
        "merchant_id": MERCHANT,
        "key_id": KEY_ID,
        "shared_secret": SecretStr(SECRET),
        "base_url": base_url,
    }
    values.update(overrides)
    return MerchantProfile(**values)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the connection after reading the request, without answering


@dataclass
class Recorded:
    method: str
    target: str  # path and query exactly as on the request line
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lowercase names
    body: bytes
    merchant_id: str | None  # what the verifier accepted
    auth_error: str | None
    scheme: str  # "http-signature" | "jwt"
    correlation_id: str  # the v-c-correlation-id answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)


MDF_LIST = "spec.merchant-defined-fields.200.response.json"
# (method, route regex) -> (status, sample file or None)
DEFAULTS: list[tuple[str, str, int, str | None]] = [
    ("POST", r"/invoicing/v2/invoices", 201, "spec.create-invoice.201.response.json"),
    ("GET", r"/invoicing/v2/invoices", 200, "spec.list-invoices.200.response.json"),
    ("GET", r"/invoicing/v2/invoices/[^/]+", 200, "spec.get-invoice.200.response.json"),
    ("PUT", r"/invoicing/v2/invoices/[^/]+", 200, "spec.update-invoice.200.response.json"),
    ("POST", r"/invoicing/v2/invoices/[^/]+/delivery", 200, "spec.send-invoice.200.response.json"),
    (
        "POST",
        r"/invoicing/v2/invoices/[^/]+/cancelation",
        200,
        "spec.cancel-invoice.200.response.json",
    ),
    (
        "POST",
        r"/invoicing/v2/invoices/[^/]+/publication",
        200,
        "spec.publish-invoice.200.response.json",
    ),
    ("GET", r"/invoicing/v2/invoiceSettings", 200, "spec.get-invoice-settings.200.response.json"),
    ("PUT", r"/invoicing/v2/invoiceSettings", 200, "spec.get-invoice-settings.200.response.json"),
    ("GET", r"/invoicing/v2/[^/]+/merchantDefinedFields", 200, MDF_LIST),
    ("POST", r"/invoicing/v2/[^/]+/merchantDefinedFields", 201, MDF_LIST),
    ("PUT", r"/invoicing/v2/[^/]+/merchantDefinedFields/[^/]+", 200, MDF_LIST),
    ("DELETE", r"/invoicing/v2/[^/]+/merchantDefinedFields/[^/]+", 204, None),
]


class FakeUpstream:
    def __init__(
        self,
        keys: list[VerificationKey] | None = None,
        *,
        expected_host: str = "127.0.0.1",
        verify: bool = True,
    ) -> None:
        self.keys = {key.key_id: key for key in (keys or [HTTP_KEY, META_KEY])}
        self.expected_host = expected_host
        self.verify = verify
        self.requests: list[Recorded] = []
        self.script: deque[Reply] = deque()
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1", port=0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def add_key(self, key: VerificationKey) -> None:
        self.keys[key.key_id] = key

    def reply(self, status: int = 200, body: Any = None, **kwargs: Any) -> None:
        self.script.append(Reply(status=status, body=body, **kwargs))

    async def start(self) -> FakeUpstream:
        await self._server.start_server()
        return self

    async def close(self) -> None:
        self._release.set()
        await self._server.close()

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        target = request.raw_path
        scheme = "jwt" if "authorization" in headers else "http-signature"
        merchant_id: str | None = None
        auth_error: str | None = None
        if self.verify:
            verifier = verify_jwt if scheme == "jwt" else verify_http_signature
            try:
                merchant_id = verifier(
                    method=request.method,
                    target=target,
                    headers=headers,
                    body=body,
                    lookup=self.keys.get,
                    expected_host=self.expected_host,
                )
            except SignatureInvalid as exc:
                auth_error = exc.reason
        correlation_id = str(uuid.uuid4())
        self.requests.append(
            Recorded(
                method=request.method,
                target=target,
                path=request.path,
                query=list(request.query.items()),
                headers=headers,
                body=body,
                merchant_id=merchant_id,
                auth_error=auth_error,
                scheme=scheme,
                correlation_id=correlation_id,
            )
        )
        correlation = {"v-c-correlation-id": correlation_id}
        if auth_error is not None:
            return web.Response(status=401, text="Authentication Failed", headers=correlation)
        route = (request.method, request.rel_url.raw_path)
        reply = self.script.popleft() if self.script else self._default(*route)
        if reply.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # nothing is written back
        headers_out = {**correlation, **reply.headers}
        if reply.raw is not None:
            return web.Response(status=reply.status, body=reply.raw, headers=headers_out)
        if reply.body is None:
            return web.Response(status=reply.status, headers=headers_out)
        return web.Response(
            status=reply.status,
            text=json.dumps(reply.body),
            content_type="application/hal+json",
            headers=headers_out,
        )

    @staticmethod
    def _default(method: str, path: str) -> Reply:
        for route_method, pattern, status, name in DEFAULTS:
            if route_method == method and re.fullmatch(pattern, path):
                return Reply(status=status, body=sample_body(name) if name else None)
        return Reply(status=404, body=sample_body("spec.error.404.response.json"))
