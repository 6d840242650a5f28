"""Every migration applies and rolls back on a real PostgreSQL, and the models match the schema."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from app import models  # noqa: F401  (registers the tables on Base.metadata)
from app.db import Base, async_url
from tests.support.postgres import alembic_config, fresh_database


async def _schema_drift(url: str) -> list:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await engine.dispose()


def test_upgrade_downgrade_upgrade_and_no_drift():
    with fresh_database("igw_migrations", migrate=False) as url:
        config = alembic_config(url)
        command.upgrade(config, "head")
        command.downgrade(config, "base")
        command.upgrade(config, "head")
        assert asyncio.run(_schema_drift(url)) == []
