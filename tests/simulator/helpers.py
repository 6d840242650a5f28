"""Test plumbing for the simulator: a real uvicorn server in a thread, a signed raw HTTP helper, a
webhook receiver, and the spec's schemas.

The raw helper exists on purpose next to the project's `CybersourceClient`: auth tests must send
what a correct client never would (tampered bodies, stale dates, the old `(request-target)` label).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn
from aiohttp import web

from app.cybersource.signing import (
    SigningCredentials,
    decode_secret,
    http_date,
    sign_http_signature,
)
from app.simulator import (
    MerchantConfig,
    SimulatorApp,
    SimulatorConfig,
    WebhookConfig,
    create_simulator_app,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cybersource"
SAMPLES = FIXTURES / "samples"

MERCHANT_A = MerchantConfig(
    merchant_id="sim_merchant_a",
    key_id="11111111-1111-4111-8111-111111111111",
    shared_secret=base64.b64encode(b"a" * 32).decode(),
)
MERCHANT_B = MerchantConfig(
    merchant_id="sim_merchant_b",
    key_id="22222222-2222-4222-8222-222222222222",
    shared_secret=base64.b64encode(b"b" * 32).decode(),
)
WEBHOOK_KEY_ID = "33333333-3333-4333-8333-333333333333"
WEBHOOK_SECRET = base64.b64encode(hashlib.sha256(b"simulator tests").digest()).decode()


def creds(merchant: MerchantConfig) -> SigningCredentials:
    return SigningCredentials(
        merchant_id=merchant.merchant_id,
        key_id=merchant.key_id,
        secret=decode_secret(merchant.shared_secret),
        portfolio_id=merchant.portfolio_id,
    )


class ServerThread:
    """uvicorn serving an ASGI app on 127.0.0.1:<free port> in its own thread and event loop."""

    def __init__(self, app: Any, **options: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
            **options,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def start_simulator(config: SimulatorConfig) -> tuple[ServerThread, SimulatorApp]:
    app = create_simulator_app(config)
    # With a clock offset the simulator dates its answers itself (as `invoicing-gateway simulator`
    # does).
    return ServerThread(app, date_header=not config.clock_offset_s).start(), app


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class RawClient:
    """Signs with the project's signer, but lets a test change anything before sending."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        merchant: MerchantConfig = MERCHANT_A,
        host: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.session = session
        self.merchant = merchant
        self.host = host or "127.0.0.1"

    def sign(
        self,
        method: str,
        target: str,
        body: bytes | None,
        *,
        merchant: MerchantConfig | None = None,
        date: str | None = None,
    ) -> dict[str, str]:
        return sign_http_signature(
            creds(merchant or self.merchant),
            method=method,
            host=self.host,
            target=target,
            body=body,
            date=date,
        )

    async def send(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        # aiohttp warns about large raw bytes bodies; a BytesIO keeps its Content-Length.
        data: Any = io.BytesIO(body) if body is not None and len(body) > 512 * 1024 else body
        async with self.session.request(
            method,
            self.base_url + target,
            data=data,
            headers=dict(headers or {}),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())

    async def call(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        merchant: MerchantConfig | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """A correctly signed request; `body` is JSON-encoded unless `raw` gives the exact bytes."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is None and method in {"POST", "PUT"}:
            data = b"{}"
        headers = self.sign(method, target, data, merchant=merchant)
        headers["Content-Type"] = "application/json;charset=utf-8"
        return await self.send(method, target, data, headers, timeout=timeout)

    async def admin(self, method: str, path: str, body: Any = None) -> Reply:
        data = json.dumps(body).encode() if body is not None else None
        return await self.send(method, path, data, {"Content-Type": "application/json"})


@dataclass
class Receiver:
    """A local webhook endpoint: records every POST and answers from a script of statuses (then
    200)."""

    script: list[int] = field(default_factory=list)
    # Seconds to wait before answering, one per request (then none): a slow receiver.
    delays: list[float] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        arrived_at = time.monotonic()
        body = await request.read()
        status = self.script.pop(0) if self.script else 200
        delay = self.delays.pop(0) if self.delays else 0.0
        entry = {"headers": dict(request.headers), "body": body, "answered": status}
        entry["arrived_at"] = arrived_at
        self.received.append(entry)
        if delay:
            await asyncio.sleep(delay)
        entry["answered_at"] = time.monotonic()
        return web.Response(status=status, text="ok")

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        await until(lambda: len(self.received) >= count, timeout)
        return self.received


async def until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def webhook_config(url: str, delays: tuple[float, ...] = (0.2, 0.5, 1.0)) -> WebhookConfig:
    return WebhookConfig(
        url=url, key_id=WEBHOOK_KEY_ID, secret=WEBHOOK_SECRET, retry_delays=delays, timeout_s=2.0
    )


def verify_webhook(
    raw_body: bytes,
    header: str,
    keys: Mapping[str, str],
    now_ms: int,
    max_age_ms: int = 3_600_000,
    max_skew_ms: int = 300_000,
) -> str | None:
    """The receiver algorithm of WEBHOOKS.md 4.4, written independently of the simulator's
    signer."""
    parts = dict(part.split("=", 1) for part in header.strip().strip('"').split(";") if "=" in part)
    t, key_id, sig = int(parts["t"]), parts["keyId"], base64.b64decode(parts["sig"])
    if key_id not in keys or t > now_ms + max_skew_ms or now_ms - t > max_age_ms:
        return None
    body = json.loads(raw_body)
    candidates = [
        (m, json.dumps(body[m], separators=(",", ":"), ensure_ascii=False))
        for m in ("payload", "payloads")
        if m in body
    ]
    candidates.append(("raw-body", raw_body.decode()))
    key = base64.b64decode(keys[key_id])
    for name, message in candidates:
        mac = hmac.new(key, f"{t}.{message}".encode(), hashlib.sha256).digest()
        if hmac.compare_digest(mac, sig):
            return name
    return None


def load_sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    return data


def now_date(offset_s: float = 0) -> str:
    return http_date(time.time() + offset_s)


# --- the spec's response schemas ------------------------------------------------------------------

SPEC: dict[str, Any] = json.loads((FIXTURES / "invoicing-openapi.json").read_text(encoding="utf-8"))


def _operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    ops = {}
    for path, methods in SPEC["paths"].items():
        for method, op in methods.items():
            if isinstance(op, dict) and "operationId" in op:
                ops[op["operationId"]] = (method.upper(), path, op)
    return ops


OPERATIONS = _operations()


def response_schema(operation_id: str, status: int) -> dict[str, Any]:
    responses = OPERATIONS[operation_id][2]["responses"]
    entry = responses.get(str(status)) or responses.get("default")
    assert entry is not None, f"{operation_id} documents no {status} answer"
    schema: dict[str, Any] = entry.get("schema", {})
    return schema


def _format_checker() -> Any:
    from datetime import date as _date
    from datetime import datetime as _datetime

    from jsonschema import FormatChecker

    checker = FormatChecker(formats=())

    @checker.checks("date", raises=ValueError)
    def _is_date(value: object) -> bool:
        return not isinstance(value, str) or (bool(_date.fromisoformat(value)) and len(value) == 10)

    @checker.checks("date-time", raises=ValueError)
    def _is_datetime(value: object) -> bool:
        return not isinstance(value, str) or bool(
            _datetime.fromisoformat(value.replace("Z", "+00:00"))
        )

    return checker


FORMATS = _format_checker()


def schema_errors(operation_id: str, status: int, body: Any, *, strict: bool = False) -> list[str]:
    """Problems of `body` against the spec's schema (Swagger 2.0 schemas are JSON Schema draft 4).

    `strict=True` also forbids properties the schema does not name (the spec itself never does), so
    tests can list exactly which extra fields the simulator adds.
    """
    from jsonschema import Draft4Validator

    schema = response_schema(operation_id, status)
    if strict:
        schema = _closed(schema)
    validator = Draft4Validator(schema, format_checker=FORMATS)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(body)
    ]


def _closed(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items() if k not in {"example", "description"}}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def unexpected_fields(operation_id: str, status: int, body: Any) -> set[str]:
    """Dotted paths (`*` for array positions) of fields the spec's response schema does not name."""
    from jsonschema import Draft4Validator

    validator = Draft4Validator(_closed(response_schema(operation_id, status)))
    found: set[str] = set()
    for error in validator.iter_errors(body):
        if error.validator != "additionalProperties":
            continue
        prefix = [("*" if isinstance(p, int) else str(p)) for p in error.absolute_path]
        for name in set(error.instance) - set(error.schema.get("properties", {})):
            found.add(".".join([*prefix, name]))
    return found
