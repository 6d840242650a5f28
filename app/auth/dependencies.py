"""The caller dependencies: authenticate the API key or workload token, require a scope, and check
the merchant profile the request acts for."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app import errors
from app.auth.principal import ADMIN, READ, WRITE, Caller
from app.auth.tokens import TokenRefused, TokenVerifier, looks_like_jwt
from app.observability.logging import get_logger
from app.settings import Settings

log = get_logger(__name__)

# Declared as security schemes so Swagger UI's Authorize button and the OpenAPI document show them.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description=(
        "The caller's API key, or its workload token (a JWT): `Authorization: Bearer <key>`"
    ),
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The caller's API key, alternatively"
)


def callers_by_key_hash(settings: Settings) -> dict[str, Caller]:
    """The configured callers, by the SHA-256 hex of their key (the only form the settings hold)."""
    return {
        key.sha256.lower(): Caller(key.client, frozenset(key.scopes), frozenset(key.profiles))
        for key in settings.effective_api_keys
    }


def _unauthenticated(detail: str) -> errors.Unauthenticated:
    return errors.Unauthenticated(detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None,
    api_key: Annotated[str | None, Depends(api_key_scheme)] = None,
) -> Caller:
    """Callers send their key (or token) as `Authorization: Bearer <key>`, or a key as
    `X-API-Key`."""
    key = bearer.credentials if bearer is not None else api_key
    if not key:
        raise _unauthenticated("Send your API key as `Authorization: Bearer <key>`.")
    callers: dict[str, Caller] = request.app.state.callers
    caller = callers.get(hashlib.sha256(key.encode()).hexdigest())
    if caller is not None:
        return caller
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if bearer is not None and verifier is not None and verifier.enabled and looks_like_jwt(key):
        try:
            return await verifier.caller(key)
        except TokenRefused as exc:
            log.info("auth.token_refused", reason=str(exc))
            raise _unauthenticated(f"The token was refused: {exc}.") from exc
    raise _unauthenticated("The API key is not valid.")


def scope(required: str) -> Callable[[Caller], Awaitable[Caller]]:
    async def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if required not in caller.scopes:
            raise errors.Forbidden(f"This caller lacks the {required!r} scope.")
        return caller

    return check


async def merchant_profile(
    caller: Annotated[Caller, Depends(authenticate)],
    profile: Annotated[
        str,
        Header(
            alias="X-Merchant-Profile",
            description=(
                "Which configured Cybersource merchant to act for (one the caller may use)."
            ),
        ),
    ] = "default",
) -> str:
    """The merchant profile of the request, if the caller may act for it (API_KEYS' `profiles`)."""
    if not caller.may_act_for(profile):
        raise errors.Forbidden(
            f"The caller {caller.client!r} may not act for the merchant profile {profile!r}."
        )
    return profile


Reader = Annotated[Caller, Depends(scope(READ))]
Writer = Annotated[Caller, Depends(scope(WRITE))]
Admin = Annotated[Caller, Depends(scope(ADMIN))]
MerchantProfile = Annotated[str, Depends(merchant_profile)]
