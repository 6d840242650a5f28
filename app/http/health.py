"""/livez, /readyz and /metrics: what Kubernetes probes and Prometheus scrape (API and worker
alike).

/readyz answers 200 when the database answers and every LISTEN connection of the process listens;
while one is reconnecting (after a database restart) it answers 503 and names it, although requests
are still served (their waits fall back to polling).

`/readyz?deep=1` (an admin credential, or a call from the pod itself over loopback) also makes one
cheap signed Cybersource call per merchant profile and names the likely cause of a refusal; any
refusal makes it 503. Probes should not use it: a Cybersource outage would take every pod out of
service.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from app import errors
from app.auth.dependencies import authenticate
from app.auth.principal import ADMIN
from app.db import Database
from app.http.deps import provide
from app.http.problems import problem_responses
from app.outbox.gauges import metrics_text
from app.upstream_sync.credentials import CredentialCheckService
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


async def deep_check(
    request: Request,
    deep: Annotated[
        bool,
        Query(
            description="also check every merchant profile's Cybersource credentials (one "
            "signed call each); admins, or the pod itself over loopback"
        ),
    ] = False,
) -> CredentialCheckService | None:
    """The credentials check when `deep` was asked for and may be: 401/403 otherwise. The credential
    is read here, not declared: the probe itself needs none, and OpenAPI must not say it does."""
    if not deep:
        return None
    client = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(client).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        bearer = None
        if scheme.lower() == "bearer" and token:
            bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip())
        caller = await authenticate(request, bearer, request.headers.get("x-api-key"))
        if ADMIN not in caller.scopes:
            raise errors.Forbidden("/readyz?deep=1 needs the 'invoices:admin' scope.")
    checks = request.app.state.services.get(CredentialCheckService)
    if not isinstance(checks, CredentialCheckService):
        raise errors.NotFound("This process has no credentials check (the API process does).")
    return checks


@router.get(
    "/readyz",
    summary="Ready to serve: the database answers and LISTEN is connected; deep=1 also checks "
    "Cybersource's credentials",
    responses={
        **problem_responses(401, 403),
        503: {
            "description": "The database does not answer, LISTEN is reconnecting, or (deep=1) "
            "Cybersource refused a profile's credentials"
        },
    },
)
async def readyz(
    database: DatabaseDep,
    readiness: ReadinessDep,
    keys: KeysDep,
    checks: Annotated[CredentialCheckService | None, Depends(deep_check)] = None,
) -> JSONResponse:
    listen = readiness.listen_status()
    extra: dict[str, object] = {"listen": listen} if listen else {}
    if checks is not None:
        results = await checks.check_all()
        extra["cybersource"] = [result.as_dict() for result in results]
        if not all(result.ok for result in results):
            return JSONResponse({"status": "unavailable", **extra}, status_code=503)
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
