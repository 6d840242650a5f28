"""What every repository shares: the statement cache, JSON parameters and typed rows.

Repositories run plain SQL through SQLAlchemy Core (the hot paths measured faster this way than
through ORM sessions) and hand back frozen dataclasses, so strict mypy checks every column a caller
reads.

SELECTs on an autocommit connection (`Database.reads`: single statements, no transaction to keep)
skip SQLAlchemy's execution and result layers and run on the asyncpg connection underneath (the same
pooled connection, its statement cache and JSON codecs): under load that layer was a third of a
read's CPU in the API process (issue 14). A driver error makes the statement run again the usual
way, so errors surface exactly as before (wrapped by SQLAlchemy, a dead connection invalidated); a
read can run twice.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

Row = TypeVar("Row")

# text() parses every statement for its bind parameters; the statements are a small fixed set (the
# list filters combine into a few dozen), so each is parsed once.
statement: functools._lru_cache_wrapper[TextClause] = functools.lru_cache(maxsize=1024)(text)


# text()'s own bind-parameter pattern: `:name`, not `::type` casts and not `\\:` escapes.
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


@functools.lru_cache(maxsize=1024)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """A `:name` statement in asyncpg's `$n` form, and the parameter names in `$n` order."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    return _BIND.sub(number, sql), tuple(numbers)


def to_json(value: Any) -> str:
    """A JSON parameter for `CAST(:x AS jsonb)`."""
    return json.dumps(value, default=str, separators=(",", ":"))


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def as_row(row_type: type[Row], mapping: Mapping[Any, Any]) -> Row:
    """Build a typed row from the columns it declares (extra columns of `SELECT *` are ignored)."""
    names = _FIELD_NAMES.get(row_type)
    if names is None:
        names = _FIELD_NAMES[row_type] = tuple(
            field.name
            for field in dataclasses.fields(row_type)  # type: ignore[arg-type]
        )
    return row_type(**{name: mapping[name] for name in names})


class BaseRepository:
    """Built from a connection; never commits (the service's transaction boundary does)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.conn = connection
        sync = connection.sync_connection
        self._on_driver = (
            sync is not None and sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        )

    async def _driver(self, method: str, sql: str, params: dict[str, Any]) -> Any:
        """`fetchrow`/`fetch` on the asyncpg connection itself (autocommit connections only)."""
        query, names = positional(sql)
        raw = await self.conn.get_raw_connection()
        return await getattr(raw.driver_connection, method)(query, *[params[n] for n in names])

    async def _one(self, sql: str, **params: Any) -> Mapping[Any, Any] | None:
        if self._on_driver and sql.startswith("SELECT"):
            try:
                found: Mapping[Any, Any] | None = await self._driver("fetchrow", sql, params)
                return found
            except Exception:  # noqa: S110 (run again below: the error as SQLAlchemy raises it)
                pass
        return (await self.conn.execute(statement(sql), params)).mappings().first()

    async def _all(self, sql: str, **params: Any) -> Sequence[Mapping[Any, Any]]:
        if self._on_driver and sql.startswith("SELECT"):
            try:
                rows: Sequence[Mapping[Any, Any]] = await self._driver("fetch", sql, params)
                return rows
            except Exception:  # noqa: S110 (run again below: the error as SQLAlchemy raises it)
                pass
        return (await self.conn.execute(statement(sql), params)).mappings().all()

    async def _execute(self, sql: str, **params: Any) -> None:
        await self.conn.execute(statement(sql), params)

    async def _row(self, row_type: type[Row], sql: str, **params: Any) -> Row | None:
        found = await self._one(sql, **params)
        return None if found is None else as_row(row_type, found)

    async def _rows(self, row_type: type[Row], sql: str, **params: Any) -> list[Row]:
        return [as_row(row_type, found) for found in await self._all(sql, **params)]

    async def _scalar(self, sql: str, **params: Any) -> Any:
        return (await self.conn.execute(statement(sql), params)).scalar()
