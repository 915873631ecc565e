"""Alembic environment: runs migrations through the service's own async engine."""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from service import embedded
from service.db import create_engine
from service.models import Base
from service.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    settings = get_settings()
    return config.attributes.get("database_url") or settings.database_direct_url or embedded.url_for(settings)


def _configure(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        # Commands started at once (replicas, two quick-start commands) migrate one after the other. Held by the
        # transaction, not the session: it holds through a transaction-mode pooler too.
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('timex-licensing:migrations'))"))
        context.run_migrations()


async def _run_online() -> None:
    # No named prepared statement (asyncpg's cache, SQLAlchemy's): none outlives the transaction, so that a
    # migration through a transaction-mode pooler cannot meet another's on the server connection it is given.
    engine = create_engine(_database_url(), unnamed_statements=True)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
