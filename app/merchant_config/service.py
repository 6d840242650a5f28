"""Cybersource's payment-page settings (invoice settings), read and changed through the facade's
signature.

A change calls Cybersource inside its idempotency key's transaction: a crash or an unreachable
Cybersource rolls the claim back, so the retry runs again (a full replacement is safe to repeat); a
rejection is a final answer, stored under the key. Changes take turns per process, because each
holds a pooled connection while Cybersource answers: a slow Cybersource must not take the pool from
reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.principal import Caller
from app.cybersource.client import CybersourceClient, CybersourceClients
from app.cybersource.errors import CybersourceError, RejectedError
from app.http.mutations import Mutation
from app.idempotency.executor import IdempotentExecutor, Outcome
from app.invoices.service import known_profile
from app.kit.upstream_errors import call_problem
from app.settings import Settings


class InvoiceSettingsService:
    def __init__(
        self, *, settings: Settings, clients: CybersourceClients, executor: IdempotentExecutor
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.executor = executor
        self._changes = asyncio.Semaphore(1)

    def _client(self, profile: str) -> CybersourceClient:
        return self.clients.get(known_profile(self.settings, profile))

    async def read(self, profile: str, product_type: str | None) -> dict[str, Any]:
        try:
            result = await self._client(profile).get_invoice_settings(product_type)
        except CybersourceError as exc:
            raise call_problem(exc, "read the settings") from exc
        return dict(result.raw)

    async def change(
        self,
        caller: Caller,
        profile: str,
        product_type: str | None,
        body: dict[str, Any],
        request: Mutation,
    ) -> tuple[Outcome, bool]:
        client = self._client(profile)

        async def call(_conn: AsyncConnection) -> Outcome:
            try:
                result = await client.update_invoice_settings(body, product_type)
            except RejectedError as exc:
                problem = call_problem(exc, "change the settings")
                return Outcome(problem.status_code, problem.problem(instance=request.path), {})
            except CybersourceError as exc:
                raise call_problem(exc, "change the settings") from exc
            return Outcome(200, dict(result.raw), {})

        async with self._changes:
            meaning = {"q": product_type, "body": body}
            return await self.executor.run_request(caller, request, meaning, call, scope=profile)
