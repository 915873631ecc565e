"""Test databases are built by the migrations, once per run and backend: SQLite always, PostgreSQL
when TEST_DATABASE_URL is set (and then it must be reachable: the suite fails rather than skips).

Each API test talks HTTP to the ASGI app through httpx, on a clock standing still on a date the
test chooses; afterwards every table is emptied.
"""

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import date
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

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")

# CI shares two cores with PostgreSQL: judge properties by their examples, not by their speed.
hypothesis.settings.register_profile("suite", deadline=None)
hypothesis.settings.load_profile("suite")
BACKENDS = ["sqlite", "postgres"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgres" in callspec.params.values():
            item.add_marker(pytest.mark.postgres)


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
    url = make_url(TEST_DATABASE_URL)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
        timeout=10,
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def _fresh_postgres_database() -> Iterator[str]:
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    name = f"timex_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(async_url(TEST_DATABASE_URL)).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, migrated to head, dropped at the end."""
    with _fresh_postgres_database() as url:
        migrate.upgrade(url, configure_logging=False)
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "test.db"
    url = f"sqlite+aiosqlite:///{path}"
    migrate.upgrade(url, configure_logging=False)
    return url


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, for the migration tests."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    with _fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


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
