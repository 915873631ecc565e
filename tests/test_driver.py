"""The one way into the database: the same SQLAlchemy statements give the same answers on asyncpg (PostgreSQL)
and through the engine (SQLite)."""

import re
from collections.abc import Iterator
from datetime import datetime

import asyncpg
import pytest
from sqlalchemy import Engine, bindparam, event, select, update

from service import driver as driver_module
from service.driver import create_driver
from service.errors import Unavailable
from service.models import Installation
from tests.api import Api

pytestmark = pytest.mark.anyio

_SUPPORT = select(Installation.code, Installation.anchor, Installation.months).where(
    Installation.code == bindparam("code")
)
_GRANT = (
    update(Installation)
    .where(Installation.code == bindparam("of"))
    .values(months=Installation.months + bindparam("more"))
)
_GRANT_ALL = update(Installation).values(months=Installation.months + 1)
_STAMP = update(Installation).where(Installation.code == bindparam("of")).values(created_at=bindparam("at"))


@pytest.fixture
async def driver(api: Api):
    driver = create_driver(api.settings.database_url, pool_size=2)
    yield driver
    await driver.close()


async def test_a_read_answers_rows_by_column_name_or_none(api: Api, driver) -> None:
    await api.installation("ACME", purchased_on="2025-11-24")

    async with driver.reading() as session:
        found = await session.first(_SUPPORT, {"code": "ACME"})
        missing = await session.first(_SUPPORT, {"code": "NOBODY"})
        listed = await session.all(_SUPPORT, {"code": "ACME"})

    assert (found["code"], found["anchor"].isoformat(), found["months"]) == ("ACME", "2025-11-24", 12)
    assert missing is None
    assert [row["code"] for row in listed] == ["ACME"]


async def test_a_write_counts_the_rows_it_changed_and_commits(api: Api, driver) -> None:
    await api.installation("ACME", purchased_on="2025-11-24")
    await api.installation("OTHER", purchased_on="2025-11-24")

    async with driver.transaction() as session:
        one = await session.execute(_GRANT, {"of": "ACME", "more": 2})
        none = await session.execute(_GRANT, {"of": "NOBODY", "more": 2})
        both = await session.execute(_GRANT_ALL, {})

    assert (one, none, both) == (1, 0, 2)
    assert (await api.support("ACME"))["months_granted"] == 15


async def test_a_failed_transaction_writes_nothing(api: Api, driver) -> None:
    await api.installation("ACME", purchased_on="2025-11-24")

    with pytest.raises(RuntimeError):
        async with driver.transaction() as session:
            await session.execute(_GRANT, {"of": "ACME", "more": 24})
            raise RuntimeError("refused after the write")

    assert (await api.support("ACME"))["months_granted"] == 12


async def test_values_pass_through_their_column_types(api: Api, driver) -> None:
    """The instants' type refuses a naive datetime, on asyncpg as through SQLAlchemy."""
    await api.installation("ACME", purchased_on="2025-11-24")

    with pytest.raises(Exception, match="naive datetime"):
        async with driver.transaction() as session:
            await session.execute(_STAMP, {"of": "ACME", "at": datetime(2026, 1, 1)})


@pytest.fixture
def statements_sent(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement sent to the database from here on: through the engine (SQLAlchemy's cursor events), and on
    the driver's own asyncpg connections (a query logger on each, as its pool connects them; asyncpg's API)."""
    sent: list[str] = []

    def through_the_engine(_connection, _cursor, statement: str, *_args) -> None:
        sent.append(statement)

    async def logging_its_queries(connection: asyncpg.Connection) -> None:
        connection.add_query_logger(lambda query: sent.append(query.query))

    create_pool = asyncpg.create_pool
    monkeypatch.setattr(
        asyncpg, "create_pool", lambda *args, **kwargs: create_pool(*args, init=logging_its_queries, **kwargs)
    )
    event.listen(Engine, "before_cursor_execute", through_the_engine)
    yield sent
    event.remove(Engine, "before_cursor_execute", through_the_engine)


def _tables_written(statement: str) -> set[str]:
    return {insert or update for insert, update in re.findall(r"INSERT INTO (\w+)|UPDATE (\w+) SET", statement)}


async def test_an_activations_writes_share_one_statement_only_where_the_database_can(
    api: Api, statements_sent: list[str]
) -> None:
    """On PostgreSQL its ledger row, its keys, the installation, its support end and its webhook event are written
    by one statement (data-modifying CTEs), one round trip; SQLite has no such statements: five, in a
    transaction."""
    await api.installation("ACME", purchased_on="2026-11-01")
    keys = await api.keys(2)
    await api.get("/.well-known/jwks.json")  # the deployment's first signing key is made here, once
    statements_sent.clear()

    response = await api.activate("ACME", keys)

    assert response.status_code == 201
    writes = [tables for tables in map(_tables_written, statements_sent) if tables]
    if api.engine.dialect.name == "postgresql":
        assert writes == [{"activations", "license_keys", "installations", "support_ends", "webhook_events"}]
    else:
        expected = [{"activations"}, {"installations"}, {"license_keys"}, {"support_ends"}, {"webhook_events"}]
        assert sorted(writes, key=sorted) == expected


@pytest.mark.postgres
async def test_waiting_too_long_for_a_connection_is_unavailable(postgres_url: str, monkeypatch) -> None:
    """Every connection of the pool busy: a read waits, up to its limit, then answers `Unavailable`."""
    monkeypatch.setattr(driver_module, "POOL_TIMEOUT_SECONDS", 0.2)
    one_connection = create_driver(postgres_url, pool_size=1)
    try:
        async with one_connection.reading():
            with pytest.raises(Unavailable):
                await one_connection.first(_SUPPORT, {"code": "ACME"})
        assert await one_connection.first(_SUPPORT, {"code": "ACME"}) is None
    finally:
        await one_connection.close()
