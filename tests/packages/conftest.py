"""Service and repository tests on a real, migrated PostgreSQL: one throwaway database for the
session, and every test inside a transaction that is rolled back at its end, so tests see an empty
store and leave nothing behind (only `invoice_number_seq` moves on: sequences ignore rollbacks).

The database is this directory's own: the outbox claim and the reconciler's queue take any due row,
so rows committed by the HTTP tests' facades must not be there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db import create_engine
from tests.support.postgres import fresh_database


@pytest.fixture(scope="session")
def packages_database_url() -> Iterator[str]:
    with fresh_database("igw_packages") as url:
        yield url


@pytest.fixture(scope="session")
async def engine(packages_database_url: str) -> AsyncIterator[AsyncEngine]:
    # The production engine factory: same JSON codec (orjson) and asyncpg type handling as the
    # service.
    engine = create_engine(packages_database_url, pool_size=3, pool_timeout=5.0)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def conn(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            await transaction.rollback()
