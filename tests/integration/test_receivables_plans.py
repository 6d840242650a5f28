"""Each receivables filter and sort is served by its index (migration 0006): EXPLAIN of the
statements the repository runs, on a store seeded large enough (generate_series) that the planner
prefers an index to reading the table. The figures on 1,000,000 invoices are in
`bench/bench_receivables.py` (`make bench`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import create_engine
from app.invoices.repository import InvoiceFilter, SortPosition, list_statements
from tests.support.postgres import fresh_database

ROWS = 60_000
TODAY = date(2026, 12, 1)

# Most invoices are paid: open, overdue and partially paid ones are the few a receivables view asks
# for.
SEED = f"""
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
       'in_sync', 'USD', round((n * 7919 % 1000000) / 100.0, 2),
       'Customer.' || (n % 9000) || '@Example.com', 'Customer ' || n,
       DATE '2024-01-01' + (n % 1100),
       '{{}}'::jsonb,
       'MC-' || (n % 12000),
       CASE WHEN n % 2 = 0 THEN 'ORDER-' || n END,
       CASE WHEN n % 3 = 0 THEN jsonb_build_object('order', 'o-' || n, 'region', 'r' || (n % 7))
            ELSE '{{}}'::jsonb END,
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + make_interval(mins => n)
FROM generate_series(1, {ROWS}) AS n
"""


@pytest.fixture(scope="module")
def seeded_url() -> Iterator[str]:
    with fresh_database("igw_plans") as url:
        yield url


@pytest.fixture(scope="module")
async def seeded(seeded_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(seeded_url, pool_size=2, pool_timeout=5.0)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(SEED))
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE invoices"))
        yield engine
    finally:
        await engine.dispose()


async def _plan(
    engine: AsyncEngine, filters: InvoiceFilter, sort: str, after: SortPosition | None = None
) -> tuple[str, list[Any]]:
    """The plans of the page's statements (JSON text), and the rows they return."""
    plans: list[Any] = []
    rows: list[Any] = []
    async with engine.connect() as conn:
        for sql, params in list_statements(filters, sort, after, 51):
            explain = text("EXPLAIN (FORMAT JSON) " + sql)
            plans.append((await conn.execute(explain, params)).scalar_one())
            rows += (await conn.execute(text(sql), params)).all()
    return json.dumps(plans), rows


def _scan_on(plan: str, index: str) -> bool:
    return f'"Index Name": "{index}"' in plan


CASES = [
    (
        "newest first, all owners",
        InvoiceFilter(merchant_profile="default"),
        "-createdAt",
        "ix_invoices_profile_created",
    ),
    (
        "due date range, sorted by due date",
        InvoiceFilter(
            merchant_profile="default", due_from=date(2025, 3, 1), due_to=date(2025, 3, 31)
        ),
        "dueDate",
        "ix_invoices_profile_due",
    ),
    (
        "sorted by due date, newest due first",
        InvoiceFilter(merchant_profile="default"),
        "-dueDate",
        "ix_invoices_profile_due",
    ),
    (
        "overdue, oldest due first",
        InvoiceFilter(merchant_profile="default", overdue=True, today=TODAY),
        "dueDate",
        "ix_invoices_profile_overdue",
    ),
    (
        "amount range, sorted by amount",
        InvoiceFilter(
            merchant_profile="default", amount_from=Decimal("100"), amount_to=Decimal("120")
        ),
        "amount",
        "ix_invoices_profile_amount",
    ),
    (
        "largest amounts first",
        InvoiceFilter(merchant_profile="default"),
        "-amount",
        "ix_invoices_profile_amount",
    ),
    (
        "merchant customer id",
        InvoiceFilter(merchant_profile="default", merchant_customer_id="MC-4321"),
        "-createdAt",
        "ix_invoices_profile_customer_id",
    ),
    (
        "e-mail in another case",
        InvoiceFilter(merchant_profile="default", customer_email="CUSTOMER.4321@EXAMPLE.COM"),
        "-createdAt",
        "ix_invoices_profile_email",
    ),
    (
        "several statuses",
        InvoiceFilter(merchant_profile="default", statuses=("PARTIAL", "PENDING")),
        "-createdAt",
        "ix_invoices_profile_status",
    ),
    (
        "external reference",
        InvoiceFilter(merchant_profile="default", owner="owner-2", external_reference="ORDER-1002"),
        "-createdAt",
        "uq_invoices_external_reference",
    ),
    (
        "metadata",
        InvoiceFilter(merchant_profile="default", metadata=(("order", "o-3003"),)),
        "-createdAt",
        "ix_invoices_metadata",
    ),
]


@pytest.mark.parametrize(("what", "filters", "sort", "index"), CASES, ids=[c[0] for c in CASES])
async def test_the_filter_is_served_by_its_index(
    seeded: AsyncEngine, what: str, filters: InvoiceFilter, sort: str, index: str
) -> None:
    plan, rows = await _plan(seeded, filters, sort)
    assert _scan_on(plan, index), f"{what}: expected {index} in {plan}"
    assert '"Node Type": "Seq Scan"' not in plan, f"{what}: reads the whole table: {plan}"
    assert rows, f"{what}: the seeded store has matches, the statement found none"


async def test_a_later_page_starts_inside_the_index(seeded: AsyncEngine) -> None:
    after = SortPosition(date(2025, 6, 1), 123)
    plan, rows = await _plan(seeded, InvoiceFilter(merchant_profile="default"), "dueDate", after)
    assert _scan_on(plan, "ix_invoices_profile_due"), plan
    assert '"Index Cond"' in plan and "due_date" in plan
    assert all(row.due_date >= date(2025, 6, 1) for row in rows)
