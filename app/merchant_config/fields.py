"""Cybersource's merchant-defined field definitions (labels and types of the custom fields an
invoice can carry in `merchantDefinedFieldValues`), listed and changed through the facade's
signature.

A change calls Cybersource inside its idempotency key's transaction, as a settings change does: a
crash or an outage rolls the claim back, so a retry runs again; a refusal is a final answer, kept
under the key. Changes take turns per process (each holds a pooled connection while Cybersource
answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.auth.principal import Caller
from app.cybersource.client import CybersourceClient, CybersourceClients
from app.cybersource.errors import CybersourceError, RejectedError
from app.cybersource.models import UpstreamResult
from app.http.mutations import Mutation
from app.idempotency.executor import IdempotentExecutor, Outcome
from app.invoices.service import known_profile
from app.kit.upstream_errors import call_problem
from app.merchant_config.schemas import MerchantDefinedFieldDefinition
from app.settings import Settings


def _definitions(result: UpstreamResult) -> list[dict[str, Any]]:
    raw = result.raw
    if isinstance(raw, dict):  # some answers wrap the list
        raw = raw.get("merchantDefinedFields") or raw.get("fields") or []
    return [item for item in raw or [] if isinstance(item, dict)]


def _not_found(exc: RejectedError, what: str) -> errors.ApiError:
    if exc.status == 404:
        return errors.NotFound(f"Cybersource has no such {what}: {exc.message}")
    return call_problem(exc, f"change the {what}")


class MerchantDefinedFieldService:
    def __init__(
        self, *, settings: Settings, clients: CybersourceClients, executor: IdempotentExecutor
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.executor = executor
        self._changes = asyncio.Semaphore(1)

    def _client(self, profile: str) -> CybersourceClient:
        return self.clients.get(known_profile(self.settings, profile))

    async def list(self, profile: str, reference_type: str) -> list[dict[str, Any]]:
        try:
            result = await self._client(profile).list_merchant_defined_fields(reference_type)
        except RejectedError as exc:
            if exc.status == 404:  # no definition yet, as some answers put it
                return []
            raise call_problem(exc, "list the merchant-defined fields") from exc
        except CybersourceError as exc:
            raise call_problem(exc, "list the merchant-defined fields") from exc
        return _definitions(result)

    async def create(
        self,
        caller: Caller,
        profile: str,
        reference_type: str,
        body: MerchantDefinedFieldDefinition,
        request: Mutation,
    ) -> tuple[Outcome, bool]:
        client = self._client(profile)
        return await self._change(
            caller,
            profile,
            request,
            {"referenceType": reference_type, "body": body.wire()},
            lambda: client.create_merchant_defined_field(reference_type, body.wire()),
            201,
        )

    async def update(
        self,
        caller: Caller,
        profile: str,
        reference_type: str,
        field_id: int,
        body: MerchantDefinedFieldDefinition,
        request: Mutation,
    ) -> tuple[Outcome, bool]:
        client = self._client(profile)
        return await self._change(
            caller,
            profile,
            request,
            {"referenceType": reference_type, "id": field_id, "body": body.wire()},
            lambda: client.update_merchant_defined_field(reference_type, field_id, body.wire()),
            200,
        )

    async def delete(self, profile: str, reference_type: str, field_id: int) -> None:
        """Deleting is idempotent at Cybersource (an unknown definition is 204 too): no key
        needed."""
        async with self._changes:
            try:
                await self._client(profile).delete_merchant_defined_field(reference_type, field_id)
            except RejectedError as exc:
                raise _not_found(exc, "merchant-defined field") from exc
            except CybersourceError as exc:
                raise call_problem(exc, "delete the merchant-defined field") from exc

    async def _change(
        self,
        caller: Caller,
        profile: str,
        request: Mutation,
        meaning: dict[str, Any],
        call: Callable[[], Awaitable[UpstreamResult]],
        status: int,
    ) -> tuple[Outcome, bool]:
        async def change(_conn: AsyncConnection) -> Outcome:
            try:
                result = await call()
            except RejectedError as exc:
                problem = _not_found(exc, "merchant-defined field")
                return Outcome(problem.status_code, problem.problem(instance=request.path), {})
            except CybersourceError as exc:
                raise call_problem(exc, "change the merchant-defined fields") from exc
            return Outcome(status, _definitions(result), {})

        async with self._changes:
            return await self.executor.run_request(caller, request, meaning, change, scope=profile)
