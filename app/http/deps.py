"""Dependencies shared by the routers: the caller, the merchant profile, the idempotency key."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app import errors
from app.idempotency.executor import IdempotentExecutor, parse_idempotency_key
from app.invoices.service import Caller, InvoiceService
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_service(request: Request) -> InvoiceService:
    service: InvoiceService = request.app.state.service
    return service


async def get_executor(request: Request) -> IdempotentExecutor:
    executor: IdempotentExecutor = request.app.state.executor
    return executor


async def single_valued_query(request: Request) -> None:
    """Every query parameter of v1 takes one value: a repeated one is refused, not silently cut to its last."""
    query = request.query_params
    if len(query.multi_items()) != len(query):
        repeated = sorted(name for name in query if len(query.getlist(name)) > 1)
        raise errors.MalformedRequest(f"Give each query parameter once; repeated: {', '.join(repeated)}.")


# Declared as security schemes so Swagger UI's Authorize button and the OpenAPI document show them.
bearer_scheme = HTTPBearer(auto_error=False, description="The caller's API key: `Authorization: Bearer <key>`")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="The caller's API key, alternatively")


async def authenticate(request: Request,
                 bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None,
                 api_key: Annotated[str | None, Depends(api_key_scheme)] = None) -> Caller:
    """Callers send their key as `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    key = bearer.credentials if bearer is not None else api_key
    if not key:
        raise errors.Unauthenticated("Send your API key as `Authorization: Bearer <key>`.",
                                     headers={"WWW-Authenticate": "Bearer"})
    digest = hashlib.sha256(key.encode()).hexdigest()
    keys: dict[str, Caller] = request.app.state.callers
    caller = keys.get(digest)
    if caller is None:
        raise errors.Unauthenticated("The API key is not valid.", headers={"WWW-Authenticate": "Bearer"})
    return caller


def scope(required: str) -> Callable[[Caller], Awaitable[Caller]]:
    async def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if required not in caller.scopes:
            raise errors.Forbidden(f"This API key lacks the {required!r} scope.")
        return caller
    return check


async def idempotency_key(idempotency_key: Annotated[str | None, Header(
        description="Required on every mutating call: a retry with the same key gets the first answer "
                    "back. A quoted string (`\"8e03978e-…\"`) or a bare token; at most 255 characters.")] = None,
                    ) -> str:
    return parse_idempotency_key(idempotency_key)


MerchantProfileHeader = Annotated[str, Header(
    alias="X-Merchant-Profile", description="Which configured Cybersource merchant to act for.")]
PreferHeader = Annotated[str | None, Header(
    description="`respond-async` answers 202 at once; `wait=N` waits up to N seconds (also for a request "
                "that is still running under the same Idempotency-Key).")]
Reader = Annotated[Caller, Depends(scope("invoices:read"))]
Writer = Annotated[Caller, Depends(scope("invoices:write"))]
Admin = Annotated[Caller, Depends(scope("invoices:admin"))]
IdempotencyKey = Annotated[str, Depends(idempotency_key)]
ServiceDep = Annotated[InvoiceService, Depends(get_service)]
ExecutorDep = Annotated[IdempotentExecutor, Depends(get_executor)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
