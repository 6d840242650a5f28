"""The baselines' server: a raw ASGI app under the same uvicorn settings as `invoicing-gateway api`.

    uv run python -m bench.raw_app --port 8090   (DATABASE_URL as for the API)

No framework, no middleware, no validation: what one HTTP answer, one query and one transaction cost
on this stack (uvicorn + uvloop + httptools with the facade's own guarded protocol and limits, an
asyncpg pool of the facade's size, orjson). The facade's figures are read against these.

  GET  /trivial              a small JSON answer                              (trivial_rps)
  GET  /read/{number}        the invoice row by (merchant_profile, number), the facade's read query,
                             every column rendered with orjson                 (asyncpg_read_rps)
  GET  /list?limit=50        the caller's newest `limit` rows, the facade's list query, rendered
                                                                               (asyncpg_list_rps)
  POST /create               the facade's create writes with asyncpg: key claim, number, invoice
                             row, outbox command + NOTIFY, key -> command; then the 202 answer
                             stored under the key in a second transaction, as
                             `Prefer: respond-async` does
                                                                               (raw_create_rps)
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import uuid
from typing import Any

import asyncpg
import orjson
import uvicorn
from starlette.types import Receive, Scope, Send

from app.db import plain_url
from app.http.server import uvicorn_options
from app.observability.logging import configure_logging
from app.settings import Settings

OWNER = "bench"
PROFILE = "default"
READ_SQL = (
    "SELECT i.*, ARRAY(SELECT o.id::text FROM operations o WHERE o.invoice_id = i.id "
    "AND o.state IN ('pending', 'in_flight') ORDER BY o.seq) AS pending_ids "
    "FROM invoices i WHERE i.merchant_profile = $1 AND i.invoice_number = $2"
)
LIST_SQL = (
    "SELECT * FROM invoices WHERE owner = $1 AND merchant_profile = $2 "
    "ORDER BY created_at DESC, id DESC LIMIT $3"
)
CLAIM_SQL = (
    "INSERT INTO idempotency_records (client, key, fingerprint, method, path, locked_until) "
    "VALUES ($1, $2, $3, 'POST', '/v1/invoices', now() + make_interval(secs => 60)) "
    "ON CONFLICT (client, key) DO NOTHING RETURNING key"
)
INSERT_INVOICE_SQL = (
    "INSERT INTO invoices (merchant_profile, invoice_number, owner, currency, total_amount, "
    "customer_email, customer_name, due_date, content) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) "
    "ON CONFLICT (merchant_profile, invoice_number) DO NOTHING RETURNING id"
)
QUEUE_SQL = (
    "WITH queued AS (INSERT INTO operations "
    "(id, invoice_id, merchant_profile, kind, payload, requested_by) "
    "VALUES ($1, $2, $3, 'create', $4::jsonb, $5) RETURNING id) "
    "SELECT pg_notify('igw_outbox', id::text) FROM queued"
)
ATTACH_SQL = "UPDATE idempotency_records SET operation_id = $1 WHERE client = $2 AND key = $3"
OPERATION_SQL = (
    "SELECT o.*, i.invoice_number, i.owner FROM operations o JOIN invoices i "
    "ON i.id = o.invoice_id "
    "WHERE o.id = $1"
)
COMPLETE_SQL = (
    "UPDATE idempotency_records SET state = 'completed', response_status = 202, "
    "response_headers = $3::jsonb, response_body = $4::jsonb, completed_at = now() "
    "WHERE client = $1 AND key = $2 AND state = 'processing'"
)
TRIVIAL = orjson.dumps({"status": "ok"})
JSON_HEADERS = [(b"content-type", b"application/json")]


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _render(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    for column in ("content", "upstream", "last_error", "payload", "result", "baseline"):
        if isinstance(row.get(column), str):
            row[column] = orjson.loads(row[column])  # jsonb arrives as text, as in the facade
    return row


class RawApp:
    def __init__(self, dsn: str, pool_size: int) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.pool: asyncpg.Pool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        status, body = 404, b'{"error":"not found"}'
        if path == "/trivial":
            status, body = 200, TRIVIAL
        elif path.startswith("/read/"):
            status, body = await self._read(path[len("/read/") :])
        elif path == "/list":
            status, body = await self._list(scope)
        elif path == "/create" and scope["method"] == "POST":
            status, body = await self._create(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = await asyncpg.create_pool(
                    self.dsn, min_size=self.pool_size, max_size=self.pool_size
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read(self, number: str) -> tuple[int, bytes]:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(READ_SQL, PROFILE, number)
        if record is None:
            return 404, b'{"error":"no such invoice"}'
        return 200, orjson.dumps(_render(record), default=_default)

    async def _list(self, scope: Scope) -> tuple[int, bytes]:
        assert self.pool is not None
        limit = 50
        for part in scope["query_string"].split(b"&"):
            if part.startswith(b"limit="):
                limit = int(part[len(b"limit=") :])
        async with self.pool.acquire() as conn:
            records = await conn.fetch(LIST_SQL, OWNER, PROFILE, limit + 1)
        items = [_render(record) for record in records[:limit]]
        return 200, orjson.dumps({"items": items, "nextCursor": None}, default=_default)

    async def _create(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        assert self.pool is not None
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        body = orjson.loads(raw)
        key = next((v.decode() for k, v in scope["headers"] if k == b"idempotency-key"), None)
        if key is None:
            return 400, b'{"error":"no key"}'
        amounts = body["orderInformation"]["amountDetails"]
        customer = body["customerInformation"]
        due = dt.date.fromisoformat(body["invoiceInformation"]["dueDate"])
        operation_id = uuid.uuid4()
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                if await conn.fetchval(CLAIM_SQL, OWNER, key, str(hash(raw))) is None:
                    return 409, b'{"error":"key in use"}'
                counter = await conn.fetchval("SELECT nextval('invoice_number_seq')")
                number = f"RAW-{counter:08d}"
                body["invoiceInformation"]["invoiceNumber"] = number
                content = orjson.dumps(body).decode()
                invoice_id = await conn.fetchval(
                    INSERT_INVOICE_SQL,
                    PROFILE,
                    number,
                    OWNER,
                    amounts["currency"],
                    decimal.Decimal(amounts["totalAmount"]),
                    customer.get("email"),
                    customer.get("name"),
                    due,
                    content,
                )
                await conn.execute(QUEUE_SQL, operation_id, invoice_id, PROFILE, content, OWNER)
                await conn.execute(ATTACH_SQL, operation_id, OWNER, key)
            async with conn.transaction():
                operation = await conn.fetchrow(OPERATION_SQL, operation_id)
                answer = orjson.dumps(
                    {"id": str(operation_id), "state": operation["state"], "invoiceNumber": number}
                )
                location = orjson.dumps({"Location": f"/v1/operations/{operation_id}"}).decode()
                await conn.execute(COMPLETE_SQL, OWNER, key, location, answer.decode())
        return 202, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    settings = Settings()
    configure_logging(settings.log_level)
    app = RawApp(plain_url(settings.database_url), settings.database_pool_size)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, **uvicorn_options(settings))


if __name__ == "__main__":
    main()
