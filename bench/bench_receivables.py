"""Receivables filters on a large store: each filter and sort of `GET /v1/invoices` timed on
1,000,000 invoices (issue 13), through the very statements the repository runs, with the index each
one uses.

    uv run python -m bench.bench_receivables  # or `make bench-receivables` (also in `make bench`)
    BENCH_RECEIVABLES_ROWS=200000 uv run python -m bench.bench_receivables

Makes a throwaway database on the local PostgreSQL (BENCH_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432), migrates it, seeds it with generate_series (90 % of the rows
in one merchant profile, most invoices paid, a few open and overdue), ANALYZEs, then runs each query
BENCH_RECEIVABLES_RUNS times (first page, 50 rows) and a deep page (the cursor of the 20th page).
Prints a table and drops the database (BENCH_KEEP=1 keeps it). Not part of CI: the EXPLAIN test
(`tests/integration/test_receivables_plans.py`) is what CI checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import create_engine
from app.invoices.repository import InvoiceFilter, SortPosition, list_statements

SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
ROWS = int(os.environ.get("BENCH_RECEIVABLES_ROWS", "1000000"))
RUNS = int(os.environ.get("BENCH_RECEIVABLES_RUNS", "30"))
PAGE = 50
TODAY = date(2026, 12, 1)

SEED = """
INSERT INTO invoices (merchant_profile, invoice_number, owner, status, sync_state, currency, \
total_amount,
                      customer_email, customer_name, due_date, content, merchant_customer_id,
                      external_reference, metadata, created_at)
SELECT CASE WHEN n % 10 = 0 THEN 'eu' ELSE 'default' END,
       'SEED-' || n,
       'owner-' || (n % 20),
       (ARRAY['PAID','PAID','PAID','PAID','PAID','PAID','PAID','SENT','CREATED','PARTIAL',
              'CANCELED','DRAFT','PENDING','PAID','PAID','PAID','PAID','PAID','PAID','PAID'])\
[1 + n % 20],
       'in_sync', 'USD', round((n::bigint * 7919 % 1000000) / 100.0, 2),
       'Customer.' || (n % 150000) || '@Example.com', 'Customer ' || n,
       DATE '2024-01-01' + (n % 1100),
       '{}'::jsonb,
       'MC-' || (n % 200000),
       CASE WHEN n % 2 = 0 THEN 'ORDER-' || n END,
       CASE WHEN n % 3 = 0 THEN jsonb_build_object('order', 'o-' || n, 'region', 'r' || (n % 7))
            ELSE '{}'::jsonb END,
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + make_interval(secs => n * 30)
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
"""

DEFAULT = "default"
CASES: list[tuple[str, InvoiceFilter, str]] = [
    ("newest first (admin, no filter)", InvoiceFilter(merchant_profile=DEFAULT), "-createdAt"),
    (
        "one owner, newest first",
        InvoiceFilter(merchant_profile=DEFAULT, owner="owner-3"),
        "-createdAt",
    ),
    (
        "due date in March 2025, by due date",
        InvoiceFilter(
            merchant_profile=DEFAULT, due_from=date(2025, 3, 1), due_to=date(2025, 3, 31)
        ),
        "dueDate",
    ),
    ("all, by due date descending", InvoiceFilter(merchant_profile=DEFAULT), "-dueDate"),
    (
        "overdue, oldest due first",
        InvoiceFilter(merchant_profile=DEFAULT, overdue=True, today=TODAY),
        "dueDate",
    ),
    (
        "amount 100-120, by amount",
        InvoiceFilter(merchant_profile=DEFAULT, amount_from=Decimal(100), amount_to=Decimal(120)),
        "amount",
    ),
    ("all, largest amount first", InvoiceFilter(merchant_profile=DEFAULT), "-amount"),
    (
        "statuses PARTIAL,PENDING",
        InvoiceFilter(merchant_profile=DEFAULT, statuses=("PARTIAL", "PENDING")),
        "-createdAt",
    ),
    (
        "merchantCustomerId",
        InvoiceFilter(merchant_profile=DEFAULT, merchant_customer_id="MC-4321"),
        "-createdAt",
    ),
    (
        "customerEmail, other case",
        InvoiceFilter(merchant_profile=DEFAULT, customer_email="CUSTOMER.4321@EXAMPLE.COM"),
        "-createdAt",
    ),
    (
        "externalReference",
        InvoiceFilter(merchant_profile=DEFAULT, owner="owner-2", external_reference="ORDER-2002"),
        "-createdAt",
    ),
    (
        "metadata[order]",
        InvoiceFilter(merchant_profile=DEFAULT, metadata=(("order", "o-3003"),)),
        "-createdAt",
    ),
]


def _indexes(plan: Any) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Index Name" in node:
                found.append(str(node["Index Name"]))
            if node.get("Node Type") == "Seq Scan":
                found.append("Seq Scan")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(plan)
    return sorted(set(found))


async def _page(
    engine: AsyncEngine, filters: InvoiceFilter, sort: str, after: SortPosition | None
) -> list[Any]:
    rows: list[Any] = []
    async with engine.connect() as conn:
        for sql, params in list_statements(filters, sort, after, PAGE):
            rows += (await conn.execute(text(sql), {**params, "limit": PAGE - len(rows)})).all()
            if len(rows) >= PAGE:
                break
    return rows


def _position(sort: str, row: Any) -> SortPosition:
    column = {"-createdAt": "created_at", "dueDate": "due_date", "-dueDate": "due_date"}.get(
        sort, "total_amount"
    )
    return SortPosition(getattr(row, column), row.id)


async def _time(
    engine: AsyncEngine, filters: InvoiceFilter, sort: str, after: SortPosition | None
) -> list[float]:
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        await _page(engine, filters, sort, after)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def _deep_position(
    engine: AsyncEngine, filters: InvoiceFilter, sort: str
) -> SortPosition | None:
    after = None
    for _ in range(20):
        rows = await _page(engine, filters, sort, after)
        if len(rows) < PAGE:
            return None
        after = _position(sort, rows[-1])
    return after


async def _seed(engine: AsyncEngine) -> float:
    started = time.perf_counter()
    step = 100_000
    for first in range(1, ROWS + 1, step):
        async with engine.begin() as conn:
            await conn.execute(text(SEED), {"first": first, "last": min(ROWS, first + step - 1)})
        print(f"  seeded {min(ROWS, first + step - 1):,} rows", file=sys.stderr, flush=True)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE invoices"))
    return time.perf_counter() - started


async def run(url: str) -> list[dict[str, Any]]:
    engine = create_engine(url, pool_size=2, pool_timeout=30.0)
    try:
        seconds = await _seed(engine)
        print(f"seeded {ROWS:,} invoices in {seconds:.0f} s", file=sys.stderr)
        results = []
        for what, filters, sort in CASES:
            sql, params = list_statements(filters, sort, None, PAGE)[
                -1 if sort == "-dueDate" else 0
            ]
            async with engine.connect() as conn:
                explain = text("EXPLAIN (FORMAT JSON) " + sql)
                plan = (await conn.execute(explain, params)).scalar_one()
            first = await _time(engine, filters, sort, None)
            deep_after = await _deep_position(engine, filters, sort)
            deep = await _time(engine, filters, sort, deep_after) if deep_after else []
            results.append(
                {
                    "query": what,
                    "sort": sort,
                    "first_page_median_ms": round(statistics.median(first), 2),
                    "first_page_p95_ms": round(sorted(first)[int(len(first) * 0.95) - 1], 2),
                    "page_21_median_ms": round(statistics.median(deep), 2) if deep else None,
                    "indexes": _indexes(plan),
                }
            )
        return results
    finally:
        await engine.dispose()


def _alembic(url: str) -> Config:
    config = Config(os.path.join(os.path.dirname(os.path.dirname(__file__)), "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> int:
    name = f"igw_bench_receivables_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = f"{SERVER}/{name}"
    try:
        command.upgrade(_alembic(url), "head")
        results = asyncio.run(run(url))
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(f"\nreceivables on {ROWS:,} invoices, page of {PAGE}, {RUNS} runs each\n")
    print(f"{'query':40} {'sort':11} {'p50 ms':>8} {'p95 ms':>8} {'p50 page 21':>12}  indexes")
    for r in results:
        deep = "-" if r["page_21_median_ms"] is None else f"{r['page_21_median_ms']:.2f}"
        print(
            f"{r['query']:40} {r['sort']:11} {r['first_page_median_ms']:8.2f} "
            f"{r['first_page_p95_ms']:8.2f} {deep:>12}  {', '.join(r['indexes'])}"
        )
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
