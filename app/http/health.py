"""/livez, /readyz and /metrics: what Kubernetes probes and Prometheus scrape (API and worker alike)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from app.db import Database
from app.http.deps import provide
from app.outbox.gauges import metrics_text

router = APIRouter(tags=["health"])
DatabaseDep = Annotated[Database, Depends(provide(Database))]


@router.get("/livez", summary="The process is alive")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready to serve: the database answers",
    responses={503: {"description": "The database does not answer"}},
)
async def readyz(database: DatabaseDep) -> JSONResponse:
    try:
        await database.ping()
    except Exception as exc:  # any failure means "not ready"; the probe only needs the verdict
        return JSONResponse(
            {"status": "unavailable", "database": type(exc).__name__}, status_code=503
        )
    return JSONResponse({"status": "ok"})


@router.get(
    "/metrics",
    summary="Prometheus metrics: HTTP traffic, relay deliveries, outbox depth",
    response_class=PlainTextResponse,
)
async def metrics_endpoint(database: DatabaseDep) -> Response:
    return await metrics_text(database.reads)
