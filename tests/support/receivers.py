"""A real HTTP receiver of push deliveries for tests: records every request, answers as told.

It verifies nothing itself: tests verify the recorded requests with the `standardwebhooks` library,
as a subscriber would. Served by `tests.support.servers.serve` in its own thread, so its state is
only appended to (and read) under a lock.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    body: bytes
    headers: dict[str, str]
    status: int  # what the receiver answered

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    def verifies_with(self, secret: str) -> bool:
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True


@dataclass
class Receiver:
    """Answers 500 to the first `failures` requests (or every one with `always_fail`), after
    `delay`.

    It listens on `/hook/<its own token>` (`path`): a port is reused by later tests, and a
    subscription an earlier test left behind must not reach this receiver (it gets a 410 and is not
    recorded).
    """

    failures: int = 0
    always_fail: bool = False
    delay: float = 0.0
    arrived: int = 0  # requests that came in, answered yet or not
    requests: list[Received] = field(default_factory=list)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            if request.path_params["token"] != self.token:
                return PlainTextResponse("not this receiver", status_code=410)
            with self._lock:
                self.arrived += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            with self._lock:
                failing = self.always_fail or self.failures > 0
                if self.failures > 0:
                    self.failures -= 1
                status = 500 if failing else 200
                self.requests.append(Received(body, dict(request.headers), status))
            if failing:
                return PlainTextResponse("not now " + "x" * 2000, status_code=500)
            return JSONResponse({"ok": True})

        async def health(request: Request) -> Response:
            return PlainTextResponse("ok")

        return Starlette(
            routes=[Route("/hook/{token}", hook, methods=["POST"]), Route("/health", health)]
        )

    @property
    def path(self) -> str:
        return f"/hook/{self.token}"

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def delivered(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        return [r for r in self.snapshot() if 200 <= r.status < 300]

    def delivered_events(self) -> list[dict[str, Any]]:
        return [r.event for r in self.delivered()]
