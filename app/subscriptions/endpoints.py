"""/v1/subscriptions: push subscriptions to the events feed; parse -> one service call ->
respond."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from app.auth.dependencies import scope
from app.auth.principal import Caller
from app.http.deps import provide
from app.http.mutations import KeyedMutationDep
from app.http.problems import problem_responses
from app.http.responses import respond
from app.subscriptions.schemas import (
    SUBSCRIPTIONS_READ,
    SUBSCRIPTIONS_WRITE,
    DeliveryOut,
    DeliveryPage,
    SecretRotation,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionPage,
    SubscriptionPatch,
    SubscriptionWithSecret,
)
from app.subscriptions.service import SubscriptionService

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
Service = Annotated[SubscriptionService, Depends(provide(SubscriptionService))]
SubscriptionReader = Annotated[Caller, Depends(scope(SUBSCRIPTIONS_READ))]
SubscriptionWriter = Annotated[Caller, Depends(scope(SUBSCRIPTIONS_WRITE))]
CHANGE_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 503)


@router.post(
    "",
    status_code=201,
    response_model=SubscriptionWithSecret,
    responses=problem_responses(400, 401, 403, 409, 422, 503),
    summary="Subscribe a URL to the events feed; the answer shows the signing secret, once",
)
async def create_subscription(
    body: SubscriptionCreate,
    caller: SubscriptionWriter,
    request: KeyedMutationDep,
    service: Service,
) -> JSONResponse:
    return respond(await service.create(caller, body, request))


@router.get(
    "",
    response_model=SubscriptionPage,
    responses=problem_responses(400, 401, 403, 422),
    summary="Subscriptions: the caller's own (admins: any `owner`, or all)",
)
async def list_subscriptions(
    caller: SubscriptionReader,
    service: Service,
    owner: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SubscriptionPage:
    return await service.page(caller, owner=owner, cursor=cursor, limit=limit)


@router.get(
    "/{subscriptionId}",
    response_model=SubscriptionOut,
    responses=problem_responses(401, 403, 404, 422),
    summary="One subscription (never its secret)",
)
async def get_subscription(
    subscriptionId: uuid.UUID, caller: SubscriptionReader, service: Service
) -> SubscriptionOut:
    return await service.get(caller, subscriptionId)


@router.patch(
    "/{subscriptionId}",
    response_model=SubscriptionOut,
    responses=CHANGE_ERRORS,
    summary="Change the URL, the event types, the description, or enable/disable it",
)
async def update_subscription(
    subscriptionId: uuid.UUID,
    body: SubscriptionPatch,
    caller: SubscriptionWriter,
    request: KeyedMutationDep,
    service: Service,
) -> JSONResponse:
    return respond(await service.update(caller, subscriptionId, body, request))


@router.delete(
    "/{subscriptionId}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="Delete a subscription and its deliveries",
)
async def delete_subscription(
    subscriptionId: uuid.UUID, caller: SubscriptionWriter, service: Service
) -> Response:
    await service.delete(caller, subscriptionId)
    return Response(status_code=204)


@router.post(
    "/{subscriptionId}/rotate-secret",
    response_model=SubscriptionWithSecret,
    responses=CHANGE_ERRORS,
    summary="A new signing secret (shown once); the old one signs alongside it for a grace period",
)
async def rotate_secret(
    subscriptionId: uuid.UUID,
    caller: SubscriptionWriter,
    request: KeyedMutationDep,
    service: Service,
    body: SecretRotation | None = None,
) -> JSONResponse:
    rotation = body or SecretRotation()
    return respond(await service.rotate_secret(caller, subscriptionId, rotation, request))


@router.get(
    "/{subscriptionId}/deliveries",
    response_model=DeliveryPage,
    responses=problem_responses(400, 401, 403, 404, 422),
    summary="Deliveries, newest first: attempts, status codes, latency, next attempt",
)
async def list_deliveries(
    subscriptionId: uuid.UUID,
    caller: SubscriptionReader,
    service: Service,
    state: Literal["pending", "in_flight", "succeeded", "failed"] | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryPage:
    return await service.deliveries(caller, subscriptionId, state=state, cursor=cursor, limit=limit)


ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": DeliveryOut, "description": "Queued; follow it in the deliveries"}
}


@router.post(
    "/{subscriptionId}/deliveries/{deliveryId}/retry",
    status_code=202,
    response_model=DeliveryOut,
    responses={**ACCEPTED, **CHANGE_ERRORS},
    summary="Deliver a failed delivery again (a fresh retry window)",
)
async def retry_delivery(
    subscriptionId: uuid.UUID,
    deliveryId: uuid.UUID,
    caller: SubscriptionWriter,
    request: KeyedMutationDep,
    service: Service,
) -> JSONResponse:
    return respond(await service.retry_delivery(caller, subscriptionId, deliveryId, request))


@router.post(
    "/{subscriptionId}/test",
    status_code=202,
    response_model=DeliveryOut,
    responses={**ACCEPTED, **CHANGE_ERRORS},
    summary="Send a `ping` (one attempt, also to a disabled subscription; not a feed event)",
)
async def test_subscription(
    subscriptionId: uuid.UUID,
    caller: SubscriptionWriter,
    request: KeyedMutationDep,
    service: Service,
) -> JSONResponse:
    return respond(await service.test(caller, subscriptionId, request))
