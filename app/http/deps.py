"""Dependencies every router shares: typed access to the services, the merchant profile, one-valued
queries.

Services are created in the lifespan and registered by type (`register`); a router asks for one with
`provide(ServiceType)`, so nothing reads untyped attributes of `app.state`, and the HTTP layer
imports no feature.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request

from app import errors
from app.auth.dependencies import MerchantProfile

T = TypeVar("T")


def register(app: FastAPI, *services: Any) -> None:
    registry: dict[type[Any], Any] = app.state.services
    for service in services:
        registry[type(service)] = service


def provide(kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    # async: FastAPI runs a plain `def` dependency in a worker thread, which costs a read a third
    # more.
    async def dependency(request: Request) -> T:
        service = request.app.state.services[kind]
        assert isinstance(service, kind)
        return service

    dependency.__name__ = f"provide_{kind.__name__}"
    return dependency


async def single_valued_query(request: Request) -> None:
    """Every query parameter of v1 takes one value: a repeated one is refused, not silently cut to
    its last."""
    query = request.query_params
    if len(query.multi_items()) != len(query):
        repeated = sorted(name for name in query if len(query.getlist(name)) > 1)
        raise errors.MalformedRequest(
            f"Give each query parameter once; repeated: {', '.join(repeated)}."
        )


# `X-Merchant-Profile`, checked against the profiles the caller may act for (403 otherwise).
MerchantProfileHeader = MerchantProfile
