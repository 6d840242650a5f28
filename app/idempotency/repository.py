"""Idempotency records: claim a key, find it again, attach its command, store its final answer,
purge."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from app.kit.sql import BaseRepository, to_json


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    fingerprint: str
    method: str
    path: str
    state: str  # processing | completed
    operation_id: uuid.UUID | None
    response_status: int | None
    response_headers: dict[str, str] | None
    response_body: Any


class IdempotencyRepository(BaseRepository):
    async def claim(
        self,
        *,
        client: str,
        key: str,
        fingerprint: str,
        method: str,
        path: str,
        lock_seconds: float,
    ) -> bool:
        """Claim a key; blocks while another transaction holds an uncommitted claim on it."""
        row = await self._one(
            "INSERT INTO idempotency_records "
            "(client, key, fingerprint, method, path, locked_until) "
            "VALUES (:client, :key, :fp, :method, :path, now() + make_interval(secs => :lock)) "
            "ON CONFLICT (client, key) DO NOTHING RETURNING key",
            client=client,
            key=key,
            fp=fingerprint,
            method=method,
            path=path,
            lock=lock_seconds,
        )
        return row is not None

    async def get(self, client: str, key: str) -> IdempotencyRecord | None:
        return await self._row(
            IdempotencyRecord,
            "SELECT * FROM idempotency_records WHERE client = :client AND key = :key",
            client=client,
            key=key,
        )

    async def attach_operation(self, client: str, key: str, operation_id: uuid.UUID) -> None:
        await self._execute(
            "UPDATE idempotency_records SET operation_id = :op WHERE client = :client "
            "AND key = :key",
            op=operation_id,
            client=client,
            key=key,
        )

    async def complete(
        self, client: str, key: str, *, status: int, headers: dict[str, str], body: Any
    ) -> None:
        await self._execute(
            "UPDATE idempotency_records SET state = 'completed', response_status = :status, "
            "response_headers = CAST(:headers AS jsonb), response_body = CAST(:body AS jsonb), "
            "completed_at = now() WHERE client = :client AND key = :key AND state = 'processing'",
            client=client,
            key=key,
            status=status,
            headers=to_json(headers),
            body=to_json(body),
        )

    async def follow_again(self, operation_id: uuid.UUID) -> int:
        """A command is re-driven: keys that stored its final answer follow it again (not its 202s,
        which point at the operation and stay true)."""
        rows = await self._all(
            "UPDATE idempotency_records SET state = 'processing', response_status = NULL, "
            "response_headers = NULL, response_body = NULL, completed_at = NULL "
            "WHERE operation_id = :op AND state = 'completed' AND response_status <> 202 "
            "RETURNING key",
            op=operation_id,
        )
        return len(rows)

    async def purge(self, *, older_than_hours: float, batch: int) -> int:
        rows = await self._all(
            "DELETE FROM idempotency_records WHERE ctid IN (SELECT ctid FROM idempotency_records "
            "WHERE created_at < now() - make_interval(secs => :age) "
            "AND (state = 'completed' OR locked_until < now()) LIMIT :batch) RETURNING key",
            age=older_than_hours * 3600,
            batch=batch,
        )
        return len(rows)
