"""The one place errors become problem+json, and the response docs every route lists."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app import errors
from app.db import database_unavailable
from app.http.schemas import Problem
from app.observability.logging import get_logger

log = get_logger(__name__)

DESCRIPTIONS = {
    400: (
        "Malformed request (malformed_json: the body is not JSON), or Idempotency-Key "
        "missing/invalid"
    ),
    401: "Missing or invalid API key or token",
    403: "The caller lacks the scope, or may not act for the merchant profile",
    404: "Not found",
    409: (
        "Conflict: state does not allow it, number taken, or the same Idempotency-Key is still "
        "running"
    ),
    413: "The body is larger than the route takes",
    422: "Invalid body, Idempotency-Key reused with another request, or Cybersource rejected it",
    429: "Too many requests of this kind (rate_limited); retry after Retry-After seconds",
    502: "Cybersource could not be reached or refused the facade's credentials",
    503: "The database is unavailable",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Problem responses of a route; 400 (malformed parameters) can happen on every route."""
    return {
        code: {
            "model": Problem,
            "description": DESCRIPTIONS[code],
            "content": {errors.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in sorted({400, *codes})
    }


def _allowed_methods(request: Request) -> str:
    """Every method of every route on this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def problem_response(error: errors.ApiError, request: Request) -> JSONResponse:
    return JSONResponse(
        error.problem(instance=request.url.path),
        status_code=error.status_code,
        headers=error.headers,
        media_type=errors.PROBLEM_JSON,
    )


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "header", "path")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.ApiError)
    async def api_error(request: Request, exc: errors.ApiError) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        where = {e.get("loc", ("body",))[0] for e in exc.errors()}
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            # A body parsed outside JsonBodyRoute: the same answer as any unreadable body.
            error: errors.ApiError = errors.MalformedJson(
                "The body is not valid JSON.",
                errors=[{"field": "body", "message": "JSON decode error"}],
            )
        elif where <= {"body"}:
            error = errors.ValidationFailed(
                "The request body is not valid; see `errors` for each field.", errors=fields
            )
        else:
            error = errors.MalformedRequest(
                "The request has invalid parameters; see `errors`.", errors=fields
            )
        return problem_response(error, request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = errors.ApiError(str(exc.detail))
        body = error.problem(instance=request.url.path)
        code = {404: "not_found", 405: "method_not_allowed", 415: "unsupported_media_type"}.get(
            exc.status_code, "http_error"
        )
        body.update(
            status=exc.status_code,
            code=code,
            type=errors.PROBLEM_TYPE_BASE + code,
            title=str(exc.detail),
        )
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return JSONResponse(
            body, status_code=exc.status_code, headers=headers, media_type=errors.PROBLEM_JSON
        )

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        # Registered on the database's exception types (not on Exception, whose handler runs after
        # the response and makes the server drop the keep-alive connection).
        if unstorable_text(exc):
            return problem_response(
                errors.MalformedRequest(
                    "The request carries text PostgreSQL cannot hold (a NUL character, \\u0000); "
                    "nothing was applied."
                ),
                request,
            )
        if not database_unavailable(exc):
            raise exc
        log.warning("api.database_unavailable", path=request.url.path, error=type(exc).__name__)
        return problem_response(
            errors.ServiceUnavailable(
                "The database is unavailable; nothing was applied. Retry with the same "
                "Idempotency-Key.",
                headers={"Retry-After": "2"},
            ),
            request,
        )

    for exc_type in DATABASE_ERRORS:
        app.add_exception_handler(exc_type, database_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.unhandled_error", path=request.url.path)
        body = {
            "type": errors.PROBLEM_TYPE_BASE + "internal_error",
            "title": "Internal error",
            "status": 500,
            "code": "internal_error",
            "detail": "An unexpected error occurred; it has been logged.",
            "instance": request.url.path,
        }
        return JSONResponse(body, status_code=500, media_type=errors.PROBLEM_JSON)


DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
)


def unstorable_text(exc: BaseException) -> bool:
    """A value PostgreSQL refuses as text or JSONB (a NUL character from a query string or path)."""
    cause = (
        exc.orig.__cause__ if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    )
    return isinstance(
        cause, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError
    )
