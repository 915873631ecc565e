"""The one way into the database: SQLAlchemy statements run on asyncpg give the answers SQLAlchemy's own
engine gives."""

import asyncio
import re
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from typing import NamedTuple

import asyncpg
import pytest
from sqlalchemy import Engine, bindparam, column, event, func, insert, select, table, update

from service import driver as driver_module
from service.driver import Rows, create_driver
from service.errors import Unavailable
from service.models import Installation, Reseller
from tests.api import Api
from tests.conftest import server_url

pytestmark = pytest.mark.anyio


class _Support(NamedTuple):
    code: str
    anchor: date
    months: int


_SUPPORT = Rows(
    select(Installation.code, Installation.anchor, Installation.months).where(Installation.code == bindparam("code")),
    _Support,
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


async def test_a_read_answers_rows_of_its_type_or_none(api: Api, driver) -> None:
    await api.installation("ACME", purchased_on="2025-11-24")

    async with driver.reading() as session:
        found = await session.first(_SUPPORT, {"code": "ACME"})
        missing = await session.first(_SUPPORT, {"code": "NOBODY"})
        listed = await session.all(_SUPPORT, {"code": "ACME"})

    assert found == _Support("ACME", date(2025, 11, 24), 12)
    assert missing is None
    assert listed == [found]


def test_a_row_type_that_does_not_name_the_statements_columns_is_refused_when_built() -> None:
    class Swapped(NamedTuple):
        anchor: date
        code: str
        months: int

    with pytest.raises(TypeError, match="columns"):
        Rows(_SUPPORT.statement, Swapped)


class _NewReseller(NamedTuple):
    id: uuid.UUID
    name: str


# No id given: the model's Python-side default (`uuid.uuid4`) makes one, as SQLAlchemy's own execution would.
_REGISTER_WITHOUT_ID = Rows(
    insert(Reseller)
    .values(name=bindparam("name"), client_id=bindparam("client_id"), secret_hash=bindparam("secret_hash"))
    .returning(Reseller.id, Reseller.name),
    _NewReseller,
)


async def test_an_insert_relying_on_a_models_python_default_gets_a_fresh_value_each_time(api: Api, driver) -> None:
    async with driver.transaction() as session:
        first = await session.first(_REGISTER_WITHOUT_ID, {"name": "One", "client_id": "rs_1", "secret_hash": "x"})
        second = await session.first(_REGISTER_WITHOUT_ID, {"name": "Two", "client_id": "rs_2", "secret_hash": "x"})
    assert first is not None and second is not None

    assert first.id != second.id
    read = await api.get(f"/v1/resellers/{first.id}", headers=api.admin)
    assert read.status_code == 200 and read.json()["name"] == "One"


async def test_a_uuid_is_read_as_pythons_uuid(api: Api, driver) -> None:
    """One UUID type wherever a row comes from: `uuid.UUID`, not asyncpg's own class."""
    reseller = await api.reseller("Partner")

    async with driver.reading() as session:
        found = await session.first(
            Rows(select(Reseller.id, Reseller.name).where(Reseller.name == "Partner"), _NewReseller), {}
        )

    assert found is not None and type(found.id) is uuid.UUID and str(found.id) == reseller["id"]


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
def statements_sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement sent to the database from here on: through the engine (SQLAlchemy's cursor events), and on
    the driver's own asyncpg connections (a query logger on each, as the driver connects them; asyncpg's API), so
    before the service starts and makes its first."""
    sent: list[str] = []

    def through_the_engine(_connection, _cursor, statement: str, *_args) -> None:
        sent.append(statement)

    connect = asyncpg.connect

    async def logging_its_queries(*args: object, **kwargs: object) -> asyncpg.Connection:
        connection = await connect(*args, **kwargs)
        connection.add_query_logger(lambda query: sent.append(query.query))
        return connection

    monkeypatch.setattr(asyncpg, "connect", logging_its_queries)
    event.listen(Engine, "before_cursor_execute", through_the_engine)
    yield sent
    event.remove(Engine, "before_cursor_execute", through_the_engine)


def _tables_written(statement: str) -> set[str]:
    return {insert or update for insert, update in re.findall(r"INSERT INTO (\w+)|UPDATE (\w+) SET", statement)}


async def test_an_activations_writes_share_one_statement(statements_sent: list[str], api: Api) -> None:
    """Its ledger row, its keys, the installation, its support end and its webhook event are written by one
    statement (data-modifying CTEs), one round trip."""
    await api.installation("ACME", purchased_on="2026-11-01")
    keys = await api.keys(2)
    await api.get("/.well-known/jwks.json")  # the deployment's first signing key is made here, once
    statements_sent.clear()

    response = await api.activate("ACME", keys)
    await asyncio.sleep(0)  # asyncpg calls its query loggers on the event loop's next turn

    assert response.status_code == 201
    writes = [tables for tables in map(_tables_written, statements_sent) if tables]
    assert writes == [{"activations", "license_keys", "installations", "support_ends", "webhook_events"}]


async def test_waiting_too_long_for_a_connection_is_unavailable(database_url: str, monkeypatch) -> None:
    """Every connection of the pool busy: a read waits, up to its limit, then answers `Unavailable`."""
    monkeypatch.setattr(driver_module, "POOL_TIMEOUT_SECONDS", 0.2)
    one_connection = create_driver(database_url, pool_size=1)
    try:
        async with one_connection.reading():
            with pytest.raises(Unavailable):
                await one_connection.first(_SUPPORT, {"code": "ACME"})
        assert await one_connection.first(_SUPPORT, {"code": "ACME"}) is None
    finally:
        await one_connection.close()


class _Backend(NamedTuple):
    pid: int


_BACKEND = Rows(select(func.pg_backend_pid().label("pid")), _Backend)
_SLEEP = Rows(select(func.pg_backend_pid().label("pid")).where(func.pg_sleep(1).is_not(None)), _Backend)


class _Count(NamedTuple):
    n: int


_ALIVE = Rows(
    select(func.count().label("n")).select_from(table("pg_stat_activity")).where(column("pid") == bindparam("pid")),
    _Count,
)


async def test_a_connection_given_up_mid_statement_is_closed_and_the_next_request_gets_a_new_one(
    database_url: str,
) -> None:
    """A request cancelled while its statement runs (its client gone, its time up) may leave the statement running
    on the connection: the connection is closed, never handed to the next request."""
    one_connection = create_driver(database_url, pool_size=1)
    try:
        first = await one_connection.first(_BACKEND, {})
        assert first is not None
        slow = asyncio.create_task(one_connection.first(_SLEEP, {}))
        await asyncio.sleep(0.3)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        after = await one_connection.first(_BACKEND, {})
        again = await one_connection.first(_BACKEND, {})
        # Its server process ends with its statement (1 s), leaving nothing behind for the tests that follow.
        for _ in range(50):
            if await one_connection.first(_ALIVE, {"pid": first.pid}) == (0,):
                break
            await asyncio.sleep(0.1)
        gone = await one_connection.first(_ALIVE, {"pid": first.pid})
    finally:
        await one_connection.close()

    assert after is not None and again is not None
    assert after.pid != first.pid, "the cancelled statement's connection was reused"
    assert again.pid == after.pid, "a connection that ended cleanly is kept"
    assert gone == (0,), "the connection given up was closed"


@pytest.mark.parametrize("session", ["single_write", "transaction"])
async def test_a_connection_lost_between_two_statements_of_a_session_is_unavailable(
    database_url: str, session: str
) -> None:
    """The server ends the session's connection after its first statement, and the loss is seen before the next
    one is sent (an activation awaits its certificate between the two): `Unavailable` (503), as when the statement
    itself finds the connection gone, not an error of the service's own (500)."""
    driver = create_driver(database_url, pool_size=1)
    admin = await asyncpg.connect(server_url())  # the maintenance database: terminates any backend
    try:
        with pytest.raises(Unavailable):
            async with getattr(driver, session)() as open_session:
                first = await open_session.first(_BACKEND, {})
                assert first is not None
                await admin.execute("SELECT pg_terminate_backend($1)", first.pid)
                await asyncio.sleep(0.3)  # the connection's end reaches its protocol
                await open_session.first(_BACKEND, {})
        assert await driver.first(_BACKEND, {}) is not None  # a new connection serves the next request
    finally:
        await admin.close()
        await driver.close()
