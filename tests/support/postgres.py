"""Throwaway PostgreSQL databases for tests: created fresh, migrated, dropped afterwards.

The server is the machine's PostgreSQL (TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432); each test session makes its own database, so nothing depends
on leftovers.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{SERVER_URL}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _in_thread(work: Callable[[], object]) -> None:
    """Run blocking/asyncio.run work off the caller's thread, so async tests may use these helpers
    too."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(work).result()


def alembic_config(url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("sqlalchemy.url", url)
    return config


@contextmanager
def fresh_database(prefix: str = "igw_test", *, migrate: bool = True) -> Iterator[str]:
    """Yield the URL of a new, migrated database; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _in_thread(lambda: asyncio.run(_admin(f'CREATE DATABASE "{name}"')))
    url = f"{SERVER_URL}/{name}"
    try:
        if migrate:
            _in_thread(lambda: command.upgrade(alembic_config(url), "head"))
        yield url
    finally:
        _in_thread(lambda: asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
