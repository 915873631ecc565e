"""The database engine and the one way to open a transaction.

PostgreSQL runs on asyncpg; SQLite (the embedded default) on aiosqlite, with every transaction
taking the write lock up front so that concurrent activations in one process serialize.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Connection, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service.errors import Unavailable

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}


def async_url(url: str) -> str:
    """Ops write the plain URL (postgresql://, sqlite://); the service always uses the async drivers."""
    scheme, sep, rest = url.partition("://")
    return _ASYNC_DRIVERS.get(scheme, scheme) + sep + rest


def create_engine(url: str, pool_size: int = 20) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _serialize_sqlite_transactions(engine)
        return engine
    # No pre-ping: it would double the round trips of every request. A connection found dead
    # instead throws the whole pool away (see `_reachable`), so the next request connects afresh.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 4,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 15},
    )


def _serialize_sqlite_transactions(engine: AsyncEngine) -> None:
    """pysqlite's own transaction handling defers BEGIN; take control so that a transaction that
    reads then writes cannot be overtaken between its read and its write."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Commit on success, roll back on any error; a lost database becomes `Unavailable`."""
    async with _reachable(engine), engine.begin() as connection:
        yield connection


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only: outside a transaction, which saves the BEGIN and ROLLBACK round
    trips that a single consistent SELECT does not need."""
    async with _reachable(engine), engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


@asynccontextmanager
async def _reachable(engine: AsyncEngine) -> AsyncIterator[None]:
    try:
        yield
    except (OSError, TimeoutError, PoolTimeout) as exc:
        raise Unavailable() from exc
    except Exception as exc:  # SQLAlchemy's wrapper, or the driver's own error where a service function used it (COPY)
        lost = isinstance(exc, DBAPIError) and (
            exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
        )
        if not (lost or transient(exc)):
            raise
        await engine.dispose(close=False)  # the server restarted: every pooled connection is dead too
        raise Unavailable() from exc


_TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, restart, cannot connect now
    asyncpg.exceptions.TooManyConnectionsError,  # 53300: no connection left, for the server or the role: try later
    asyncpg.exceptions.TransactionRollbackError,  # class 40: serialization failure, deadlock: retry
)


def transient(exc: BaseException) -> bool:
    """Whether a driver error, raised by asyncpg or under SQLAlchemy's wrapper, is transient: the server went away,
    refused a connection for want of one, or asked for the transaction to be retried."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _TRANSIENT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
