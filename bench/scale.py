"""The store side of `make bench`: rows generated with SQL, queued commands, pgbench, the direct
call."""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from app.cybersource.client import CybersourceClient
from app.cybersource.models import InvoiceCreateRequest
from app.cybersource.profiles import (
    LOCAL_KEY_ID,
    LOCAL_MERCHANT_ID,
    LOCAL_SHARED_SECRET,
    MerchantProfile,
)
from app.cybersource.transport import Timeouts

# Columns a generated row does not copy from its template.
_OWN = {"id", "invoice_number", "created_at"}


async def _columns(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'invoices' "
        "AND is_generated = 'NEVER' ORDER BY ordinal_position"
    )
    return [row["column_name"] for row in rows if row["column_name"] not in _OWN]


async def clone_invoices(
    conn: asyncpg.Connection, template: str, count: int, *, start: int = 1
) -> None:
    """`count` copies of invoice `template` (numbers BULK-…), older than every real one."""
    if count <= 0:
        return
    columns = await _columns(conn)
    listed = ", ".join(columns)
    copied = ", ".join(f"t.{c}" for c in columns)
    await conn.execute(
        f"INSERT INTO invoices (invoice_number, created_at, {listed}) "
        "SELECT 'BULK-' || lpad(g::text, 9, '0'), "
        f"t.created_at - make_interval(secs => g), {copied} "
        "FROM generate_series($2::bigint, $3::bigint) AS g, "
        "(SELECT * FROM invoices WHERE invoice_number = $1) AS t",
        template,
        start,
        start + count - 1,
    )
    await conn.execute("VACUUM ANALYZE invoices")


async def grow(conn: asyncpg.Connection, rows: int, chunk: int = 200_000) -> None:
    """More BULK- copies until the table holds `rows` invoices (in chunks: progress, smaller WAL
    bursts)."""
    have = await conn.fetchval("SELECT count(*) FROM invoices")
    template = await conn.fetchval(
        "SELECT invoice_number FROM invoices WHERE upstream IS NOT NULL ORDER BY id LIMIT 1"
    )
    start = 1 + (
        await conn.fetchval("SELECT count(*) FROM invoices WHERE invoice_number LIKE 'BULK-%'")
    )
    while have < rows:
        count = min(chunk, rows - have)
        await conn.execute(
            f"INSERT INTO invoices (invoice_number, created_at, {', '.join(await _columns(conn))}) "
            "SELECT 'BULK-' || lpad(g::text, 9, '0'), "
            "t.created_at - make_interval(days => 1, secs => g), "
            f"{', '.join('t.' + c for c in await _columns(conn))} "
            "FROM generate_series($2::bigint, $3::bigint) AS g, "
            "(SELECT * FROM invoices WHERE invoice_number = $1) AS t",
            template,
            start,
            start + count - 1,
        )
        start += count
        have += count
    await conn.execute("VACUUM ANALYZE invoices")


async def sample_numbers(conn: asyncpg.Connection, count: int) -> list[str]:
    rows = await conn.fetch("SELECT invoice_number FROM invoices ORDER BY random() LIMIT $1", count)
    return [row["invoice_number"] for row in rows]


async def backlog(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM operations WHERE state IN ('pending', 'in_flight')"
    )
    return count


async def drain(conn: asyncpg.Connection, limit_s: float = 300.0) -> None:
    began = time.perf_counter()
    while await backlog(conn):
        if time.perf_counter() - began > limit_s:
            raise RuntimeError(f"the relay left commands undelivered after {limit_s:.0f} s")
        await asyncio.sleep(0.1)


async def settle(conn: asyncpg.Connection) -> int:
    """Take what the create scenarios queued off the queue (what is in flight finishes), so that the
    next scenario does not share the machine with a relay draining thousands of commands (which it
    does slowly: see relay_rate). Returns how many commands were taken off."""
    await conn.execute("ANALYZE operations")
    removed = await conn.fetchval(
        "WITH gone AS (DELETE FROM operations WHERE state = 'pending' RETURNING 1) "
        "SELECT count(*) FROM gone"
    )
    await drain(conn)
    return int(removed)


async def relay_rate(conn: asyncpg.Connection, commands: int, limit_s: float) -> dict[str, Any]:
    """Queue `commands` creates (invoice rows + commands, one transaction), then the rate they are
    delivered at, until all are or `limit_s` has passed (what is left then is taken off the queue).

    The table is analyzed after the burst, as autovacuum would soon do: with the statistics of an
    almost empty queue the relay's claim plans a nested loop that costs seconds per claim.
    """
    await drain(conn)
    template = await conn.fetchval(
        "SELECT invoice_number FROM invoices WHERE upstream IS NOT NULL ORDER BY id LIMIT 1"
    )
    payload = await conn.fetchval(
        "SELECT payload::text FROM operations WHERE kind = 'create' ORDER BY seq LIMIT 1"
    )
    tag = f"Q{time.monotonic_ns() % 10**9}-"
    async with conn.transaction():
        await conn.execute(
            "WITH fresh AS (INSERT INTO invoices (merchant_profile, invoice_number, owner, "
            "currency, total_amount, customer_email, customer_name, due_date, content) "
            "SELECT t.merchant_profile, $2 || g, t.owner, t.currency, t.total_amount, "
            "t.customer_email, t.customer_name, t.due_date, t.content "
            "FROM generate_series(1, $3) AS g, "
            "(SELECT * FROM invoices WHERE invoice_number = $1) AS t "
            "RETURNING id, merchant_profile) "
            "INSERT INTO operations "
            "(id, invoice_id, merchant_profile, kind, payload, requested_by) "
            "SELECT gen_random_uuid(), id, merchant_profile, 'create', $4::jsonb, 'bench' "
            "FROM fresh",
            template,
            tag,
            commands,
            payload,
        )
    await conn.execute("ANALYZE operations")
    began = time.perf_counter()
    await conn.execute("SELECT pg_notify('igw_outbox', '')")
    finished = True
    while await backlog(conn):
        if time.perf_counter() - began > limit_s:
            finished = False
            break
        await asyncio.sleep(0.1)
    seconds = time.perf_counter() - began
    delivered: int = await conn.fetchval(
        "SELECT count(*) FROM operations o JOIN invoices i ON i.id = o.invoice_id "
        "WHERE i.invoice_number LIKE $1 AND o.state = 'succeeded'",
        tag + "%",
    )
    if not finished:  # bounded run: the rest leaves the queue, what is in flight finishes
        await conn.execute(
            "DELETE FROM operations o USING invoices i WHERE i.id = o.invoice_id "
            "AND i.invoice_number LIKE $1 AND o.state = 'pending'",
            tag + "%",
        )
        await drain(conn)
    elif delivered != commands:
        raise RuntimeError(
            f"the relay did not deliver {commands - delivered} of {commands} commands"
        )
    return {
        "commands": commands,
        "delivered": delivered,
        "seconds": round(seconds, 1),
        "finished": finished,
        "commands_per_s": round(delivered / seconds, 1),
    }


PGBENCH_SCRIPT = Path(__file__).with_name("pgbench_create.sql")


def pgbench(dsn: str, work: Path, payload: str, *, seconds: float, clients: int = 20) -> float:
    """The create's statements as a pgbench transaction (prepared, `clients` = the API's pool)."""
    script = work / "create.sql"
    literal = "'" + payload.replace("'", "''") + "'"
    script.write_text(PGBENCH_SCRIPT.read_text().replace(":content_json", literal))
    argv = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "1"]
    argv += ["-T", str(max(1, round(seconds))), "-f", str(script), dsn]
    for attempt in range(5):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        found = re.search(r"tps = ([\d.]+)", done.stdout)
        if done.returncode == 0 and found is not None:
            return round(float(found.group(1)), 1)
        if "too many clients" not in done.stderr or attempt == 4:
            break
        time.sleep(2)  # the shared server is out of connections for a moment (other suites)
    raise RuntimeError(f"pgbench failed: {done.stdout}\n{done.stderr}")


REQUEST = InvoiceCreateRequest.model_validate(
    {
        "customerInformation": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "invoiceInformation": {
            "description": "Consulting, two hours",
            "dueDate": "2030-12-31",
            "sendImmediately": False,
            "deliveryMode": "none",
        },
        "orderInformation": {
            "amountDetails": {"totalAmount": Decimal("250.00"), "currency": "USD"},
            "lineItems": [
                {"productName": "Consulting hour", "quantity": 2, "unitPrice": Decimal("125.00")}
            ],
        },
    }
)


async def direct_upstream_p50_ms(base_url: str, calls: int) -> float:
    """One signed create at a time, straight to the upstream with the facade's client: the p50."""
    profile = MerchantProfile(
        merchant_id=LOCAL_MERCHANT_ID,
        key_id=LOCAL_KEY_ID,
        shared_secret=SecretStr(LOCAL_SHARED_SECRET),
        base_url=base_url,
    )
    latencies = []
    async with CybersourceClient(
        profile, timeouts=Timeouts(connect=5, read=30, total=45)
    ) as client:
        for i in range(calls + 5):
            began = time.perf_counter()
            await client.create_invoice(REQUEST)
            if i >= 5:  # the first calls open the connection
                latencies.append(time.perf_counter() - began)
    return round(statistics.median(latencies) * 1000, 2)
