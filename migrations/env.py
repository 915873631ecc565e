"""Alembic environment: runs migrations through the service's own async engine."""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from service.db import create_engine
from service.models import Base
from service.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


# Any number of `migrate` may start at once (a Job retried, one per replica): on PostgreSQL each takes this lock
# first, in its one transaction, so that they migrate one after the other and the later ones find nothing to do.
# Held by the transaction, not by the session: it works through a transaction-mode pooler too.
MIGRATION_LOCK = 0x74696D6578  # "timex"


def _database_url() -> str:
    return config.attributes.get("database_url") or get_settings().direct_database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
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
