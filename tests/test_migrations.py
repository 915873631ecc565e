"""The schema is made by the migrations alone, and they agree with the models."""

import asyncio

from alembic import command
from sqlalchemy import inspect

from service import schema
from service.db import create_engine
from service.models import Base


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names())) - {"alembic_version"}
    finally:
        await engine.dispose()


def test_migrations_go_up_to_head_and_back_down_to_base(empty_database_url: str) -> None:
    schema.upgrade(empty_database_url, configure_logging=False)
    assert asyncio.run(_tables(empty_database_url)) == set(Base.metadata.tables)

    schema.downgrade(empty_database_url, configure_logging=False)
    assert asyncio.run(_tables(empty_database_url)) == set()


def test_the_models_and_the_migrations_agree(database_url: str) -> None:
    """`alembic check`: autogenerate finds nothing to add on a database built by the migrations."""
    command.check(schema.alembic_config(database_url, configure_logging=False))
