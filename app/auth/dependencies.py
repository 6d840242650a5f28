"""The caller dependencies: authenticate the API key, then require a scope."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app import errors
from app.auth.principal import ADMIN, READ, WRITE, Caller
from app.settings import Settings

# Declared as security schemes so Swagger UI's Authorize button and the OpenAPI document show them.
bearer_scheme = HTTPBearer(
    auto_error=False, description="The caller's API key: `Authorization: Bearer <key>`"
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The caller's API key, alternatively"
)


def callers_by_key_hash(settings: Settings) -> dict[str, Caller]:
    """The configured callers, by the SHA-256 hex of their key (the only form the settings hold)."""
    return {
        key.sha256.lower(): Caller(key.client, frozenset(key.scopes))
        for key in settings.effective_api_keys
    }


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None,
    api_key: Annotated[str | None, Depends(api_key_scheme)] = None,
) -> Caller:
    """Callers send their key as `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    key = bearer.credentials if bearer is not None else api_key
    if not key:
        raise errors.Unauthenticated(
            "Send your API key as `Authorization: Bearer <key>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    callers: dict[str, Caller] = request.app.state.callers
    caller = callers.get(hashlib.sha256(key.encode()).hexdigest())
    if caller is None:
        raise errors.Unauthenticated(
            "The API key is not valid.", headers={"WWW-Authenticate": "Bearer"}
        )
    return caller


def scope(required: str) -> Callable[[Caller], Awaitable[Caller]]:
    async def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if required not in caller.scopes:
            raise errors.Forbidden(f"This API key lacks the {required!r} scope.")
        return caller

    return check


Reader = Annotated[Caller, Depends(scope(READ))]
Writer = Annotated[Caller, Depends(scope(WRITE))]
Admin = Annotated[Caller, Depends(scope(ADMIN))]
