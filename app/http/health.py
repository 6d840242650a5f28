"""/livez and /readyz for Kubernetes probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.invoices.repository import Repository

router = APIRouter(tags=["health"])


@router.get("/livez", summary="The process is alive")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready to serve: the database answers",
            responses={503: {"description": "The database does not answer"}})
async def readyz(request: Request) -> JSONResponse:
    try:
        async with request.app.state.reads.connect() as conn:
            await Repository(conn).ping()
    except Exception as exc:  # any failure means "not ready"; the probe only needs the verdict
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok"})
