"""/livez, /readyz and /metrics: what Kubernetes probes and Prometheus scrape (API and worker alike).

/readyz answers 200 when the database answers and every LISTEN connection of the process listens; while
one is reconnecting (after a database restart) it answers 503 and names it, although requests are still
served (their waits fall back to polling).
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from app.db import Database
from app.http.deps import provide
from app.outbox.gauges import metrics_text
from app.upstream_sync.key_expiry import WebhookKeyMonitor


class Listening(Protocol):
    @property
    def status(self) -> str: ...  # listening | reconnecting | off


class Readiness:
    """What /readyz checks besides the database: the LISTEN connections this process keeps."""

    def __init__(self) -> None:
        self.listeners: dict[str, Listening] = {}

    def watch(self, name: str, listener: Listening) -> None:
        self.listeners[name] = listener

    def listen_status(self) -> dict[str, str]:
        return {name: listener.status for name, listener in self.listeners.items()}


router = APIRouter(tags=["health"])
DatabaseDep = Annotated[Database, Depends(provide(Database))]
ReadinessDep = Annotated[Readiness, Depends(provide(Readiness))]
KeysDep = Annotated[WebhookKeyMonitor, Depends(provide(WebhookKeyMonitor))]


@router.get("/livez", summary="The process is alive")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready to serve: the database answers and LISTEN is connected",
    responses={503: {"description": "The database does not answer, or LISTEN is reconnecting"}},
)
async def readyz(database: DatabaseDep, readiness: ReadinessDep, keys: KeysDep) -> JSONResponse:
    listen = readiness.listen_status()
    extra: dict[str, object] = {"listen": listen} if listen else {}
    if expiring := keys.readiness_detail():  # a warning only: the pod stays ready
        extra["cybersourceWebhookKeys"] = expiring
    try:
        await database.ping()
    except Exception as exc:  # any failure means "not ready"; the probe only needs the verdict
        return JSONResponse(
            {"status": "unavailable", "database": type(exc).__name__, **extra}, status_code=503
        )
    if any(status == "reconnecting" for status in listen.values()):
        return JSONResponse({"status": "unavailable", **extra}, status_code=503)
    return JSONResponse({"status": "ok", **extra})


@router.get(
    "/metrics",
    summary="Prometheus metrics: HTTP traffic, relay deliveries, outbox depth",
    response_class=PlainTextResponse,
)
async def metrics_endpoint(database: DatabaseDep, keys: KeysDep) -> Response:
    keys.check()
    return await metrics_text(database.reads)
