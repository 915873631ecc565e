"""Database URLs and the SQLAlchemy engine: what Alembic migrates with, and what the embedded SQLite
database is driven through (`service.driver.EngineDriver`). Statements reach the database through a
`service.driver.Driver`, never through an engine of their own.

PostgreSQL runs on asyncpg; SQLite (the embedded default) on aiosqlite, with every transaction
taking the write lock up front so that concurrent activations in one process serialize.
"""

from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}


def async_url(url: str) -> str:
    """Ops write the plain URL (postgresql://, sqlite://); the service always uses the async drivers."""
    scheme, sep, rest = url.partition("://")
    return _ASYNC_DRIVERS.get(scheme, scheme) + sep + rest


def create_engine(url: str, pool_size: int = 5, *, unnamed_statements: bool = False) -> AsyncEngine:
    """An engine of at most `pool_size` connections; `unnamed_statements`: no prepared statement outlives its
    transaction on PostgreSQL (each statement parsed again), as a transaction-mode pooler needs."""
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, connect_args={"timeout": 30})
        _serialize_sqlite_transactions(engine)
        return engine
    unnamed = {"statement_cache_size": 0, "prepared_statement_cache_size": 0} if unnamed_statements else {}
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 15, **unnamed},
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
