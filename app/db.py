"""The engine factory, the metadata naming convention, and URL handling."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson
from sqlalchemy import MetaData
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase

if TYPE_CHECKING:
    from app.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def async_url(url: str) -> str:
    """Accept `postgresql://` (what most tools hand out) and use the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def plain_url(url: str) -> str:
    """The same database as a libpq/asyncpg DSN (for LISTEN connections and raw asyncpg pools)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def json_loads(text: str) -> Any:
    """JSONB columns are decoded on every read: orjson is several times faster than the standard
    library.

    orjson reads integers beyond 64 bits as floats; every integer in Cybersource's invoicing schema
    is an int64 at most (quantity, definitionId), and amounts are strings, so stored bodies decode
    exactly.
    """
    return orjson.loads(text)


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(
    url: str,
    *,
    pgbouncer: bool = False,
    pool_size: int = 20,
    pool_timeout: float = 10.0,
    **kwargs: Any,
) -> AsyncEngine:
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "invoicing-gateway"}}
    if pgbouncer:
        # PgBouncer in transaction mode hands each transaction any server connection: no statement
        # cache, and unique statement names so two clients never collide on one server connection.
        connect_args.update(
            statement_cache_size=0,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=lambda: f"__igw_{uuid.uuid4().hex}__",
        )
    # No pre-ping: it would add a round trip to every checkout on the hot paths. A connection that
    # died (database restart) fails its request once with 503, is discarded, and the retry gets a
    # fresh one.
    # No overflow: under sustained load beyond the pool, overflow connections are opened and closed
    # per request (bench_api: reads 16-20 % faster without); past the pool, requests queue for
    # `pool_timeout`.
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        pool_recycle=1800,
        connect_args=connect_args,
        json_deserializer=json_loads,
        json_serializer=json_dumps,
        # An error's text never carries the statement's values (customer e-mails, names, bodies).
        hide_parameters=True,
        **kwargs,
    )


def autocommit_reads(engine: AsyncEngine, *, pgbouncer: bool) -> AsyncEngine:
    """The engine for single-statement reads: autocommit saves the BEGIN/ROLLBACK round trips.

    Not behind PgBouncer in transaction mode: asyncpg prepares a statement and executes it in two
    round trips, and outside a transaction PgBouncer may run the second on another server
    connection, where the statement does not exist. There reads keep their transaction, which pins
    one server connection.
    """
    return engine if pgbouncer else engine.execution_options(isolation_level="AUTOCOMMIT")


def engine_from_settings(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """The one way every process (API, worker, CLI) builds its engine from the settings."""
    return create_engine(
        settings.database_url,
        pgbouncer=settings.database_pgbouncer,
        pool_size=settings.database_pool_size if pool_size is None else pool_size,
        pool_timeout=settings.database_pool_timeout_seconds,
    )


def listen_dsn(settings: Settings) -> str | None:
    """Where LISTEN connects (never through PgBouncer), or None when the relay is told not to
    listen."""
    if not settings.relay_listen:
        return None
    return plain_url(settings.database_listen_url or settings.database_url)


@dataclass(frozen=True, slots=True)
class Database:
    """A process's engines: `engine` for transactions, `reads` for single-statement reads
    (autocommit)."""

    engine: AsyncEngine
    reads: AsyncEngine

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = engine_from_settings(settings)
        return cls(engine, autocommit_reads(engine, pgbouncer=settings.database_pgbouncer))

    async def ping(self) -> None:
        async with self.reads.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()


# SQLSTATE object_not_in_prerequisite_state: at connect time, the database refuses connections.
NOT_ACCEPTING_CONNECTIONS = "55000"


def retire_pooled_connections(engine: AsyncEngine) -> None:
    """Replace each connection `engine`'s pool made before now at its next checkout.

    For when the database went away (a restart kills every connection): otherwise each pooled
    connection that died fails one request with a 503 once the database is back. SQLAlchemy does
    the same itself when a statement meets a dead connection (`Pool._invalidate` marks the pool's
    generation); this does it as soon as the loss is known. Nothing is closed here, so it never
    blocks; connections in use finish their work first.
    """
    engine.sync_engine.pool._invalidate(None, _checkin=False)  # type: ignore[arg-type]


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or refuses connections (down, restarting, out of
    connections)."""
    if isinstance(
        exc, OSError | sa_exc.TimeoutError | sa_exc.InterfaceError | sa_exc.OperationalError
    ):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        cause = exc.orig.__cause__ if exc.orig is not None else None
        if exc.statement is None and getattr(cause, "sqlstate", None) == NOT_ACCEPTING_CONNECTIONS:
            # Refused while connecting: "database ... is not currently accepting connections" (an
            # operator's ALLOW_CONNECTIONS false). Its class is no connection error; nothing ran.
            return True
        return isinstance(
            cause,
            asyncpg.PostgresConnectionError
            | asyncpg.TooManyConnectionsError
            | asyncpg.CannotConnectNowError
            | OSError,
        )
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.TooManyConnectionsError
        | asyncpg.CannotConnectNowError,
    )
