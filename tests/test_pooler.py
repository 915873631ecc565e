"""`DATABASE_TRANSACTION_POOLER=true`: the driver leaves no prepared statement on a server connection past the
statement's own round trip, so that a transaction-mode pooler may hand each transaction another one."""

import asyncio
from typing import NamedTuple

import asyncpg
import pytest
from sqlalchemy import Integer, bindparam, func, literal_column, select, table
from sqlalchemy.engine import make_url

from service.driver import Rows, create_driver
from service.pooler import UnnamedStatements
from tests.pgbouncer import needs_pgbouncer, pgbouncer

pytestmark = [pytest.mark.anyio, needs_pgbouncer]


class _Number(NamedTuple):
    n: int


_PLUS_ONE = Rows(select((literal_column("1") + bindparam("n", type_=Integer)).label("n")), _Number)
_PREPARED = Rows(select(func.count().label("n")).select_from(table("pg_prepared_statements")), _Number)


async def test_no_prepared_statement_is_left_on_the_server_connection(database_url: str) -> None:
    driver = create_driver(database_url, pool_size=1, transaction_pooler=True)
    try:
        for n in range(3):  # the same statements again: described once, parsed each time
            assert await driver.first(_PLUS_ONE, {"n": n}) == (n + 1,)
            async with driver.transaction() as session:
                assert await session.first(_PLUS_ONE, {"n": n}) == (n + 1,)
        left = await driver.first(_PREPARED, {})
    finally:
        await driver.close()

    assert left == (0,)


async def test_a_statement_is_described_once_per_connection_and_never_named(database_url: str) -> None:
    """What `UnnamedStatements` relies on in asyncpg (pyproject.toml bounds its version): its statement lookup is
    the one overridden, and hands back an unnamed statement."""
    connection = await asyncpg.connect(
        database_url.replace("+asyncpg", ""), statement_cache_size=0, connection_class=UnnamedStatements
    )
    try:
        answers = [await connection.fetchval("SELECT $1::int + 1", n) for n in range(3)]
        prepared = await connection.fetchval("SELECT count(*) FROM pg_prepared_statements")
        described = list(connection._described.values())
    finally:
        await connection.close()

    assert answers == [1, 2, 3] and prepared == 0
    assert len(described) == 2 and [statement.name for statement in described] == ["", ""]


async def test_a_burst_through_pgbouncer_in_transaction_mode_meets_no_other_connection_s_statement(
    database_url: str,
) -> None:
    with pgbouncer(database_url, pool_size=2) as bouncer:
        driver = create_driver(bouncer.url, pool_size=10, transaction_pooler=True)

        async def twice(n: int) -> list[_Number | None]:
            async with driver.transaction() as session:
                first = await session.first(_PLUS_ONE, {"n": n})
            return [first, await driver.first(_PLUS_ONE, {"n": n})]

        try:
            answers = await asyncio.gather(*(twice(n) for n in range(200)))
        finally:
            await driver.close()

    assert answers == [[(n + 1,), (n + 1,)] for n in range(200)]


async def _transactions(database_url: str) -> int:
    """PostgreSQL's count of the committed transactions in the database (each server process adds its own at the
    end of a transaction more than a second after its last, hence the pauses around)."""
    url = make_url(database_url)
    connection = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        return await connection.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    finally:
        await connection.close()


async def test_through_pgbouncer_each_statement_is_one_transaction_on_the_server(database_url: str) -> None:
    """PgBouncer sends a `SET` before a client's transaction on a server connection whose settings differ from
    the client's: the pool's `client_encoding` is spelled as the server's, so that it never does."""
    statements = 200
    with pgbouncer(database_url, pool_size=1) as bouncer:
        driver = create_driver(bouncer.url, pool_size=1, transaction_pooler=True)
        try:

            async def flushed() -> int:
                await asyncio.sleep(1.1)
                await driver.first(_PLUS_ONE, {"n": 0})  # the server process reports its count at its end
                return await _transactions(database_url)

            before = await flushed()
            for n in range(statements):
                await driver.first(_PLUS_ONE, {"n": n})
            after = await flushed()
        finally:
            await driver.close()

    assert after - before < statements * 1.5, f"{after - before} transactions for {statements} statements"
