"""What every repository shares: the statement cache, JSON parameters and typed rows.

Repositories run plain SQL through SQLAlchemy Core (the hot paths measured faster this way than through
ORM sessions) and hand back frozen dataclasses, so strict mypy checks every column a caller reads.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import RowMapping, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

Row = TypeVar("Row")

# text() parses every statement for its bind parameters; the statements are a small fixed set (the list
# filters combine into a few dozen), so each is parsed once.
statement: functools._lru_cache_wrapper[TextClause] = functools.lru_cache(maxsize=1024)(text)


def to_json(value: Any) -> str:
    """A JSON parameter for `CAST(:x AS jsonb)`."""
    return json.dumps(value, default=str, separators=(",", ":"))


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def as_row(row_type: type[Row], mapping: Mapping[Any, Any]) -> Row:
    """Build a typed row from the columns it declares (extra columns of `SELECT *` are ignored)."""
    names = _FIELD_NAMES.get(row_type)
    if names is None:
        names = _FIELD_NAMES[row_type] = tuple(field.name for field in dataclasses.fields(row_type))  # type: ignore[arg-type]
    return row_type(**{name: mapping[name] for name in names})


class BaseRepository:
    """Built from a connection; never commits (the service's transaction boundary does)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.conn = connection

    async def _one(self, sql: str, **params: Any) -> RowMapping | None:
        return (await self.conn.execute(statement(sql), params)).mappings().first()

    async def _all(self, sql: str, **params: Any) -> Sequence[RowMapping]:
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
