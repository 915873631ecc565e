"""Database URLs and the SQLAlchemy engine, which Alembic migrates with (and tests arrange data with).
Statements of the service reach the database through a `service.driver.Driver`, never through an engine of
their own."""

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def async_url(url: str) -> str:
    """Ops write the plain URL (postgresql://); the service always uses asyncpg."""
    scheme, sep, rest = url.partition("://")
    return _ASYNC_DRIVERS.get(scheme, scheme) + sep + rest


def create_engine(url: str, pool_size: int = 5, *, unnamed_statements: bool = False) -> AsyncEngine:
    """An engine of at most `pool_size` connections; `unnamed_statements`: no prepared statement outlives its
    transaction (each statement parsed again), as a transaction-mode pooler needs."""
    unnamed = {"statement_cache_size": 0, "prepared_statement_cache_size": 0} if unnamed_statements else {}
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 15, **unnamed},
    )
