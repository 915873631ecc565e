"""The hot paths' way to the database: SQLAlchemy Core statements, compiled once, run on the driver.

Through SQLAlchemy's `AsyncConnection` a single-row read costs about twice the CPU of the same read on
asyncpg itself (greenlet switches on checkout, execute and release), and on the support-state read
that is most of the request. So on PostgreSQL the hot paths (support state, quote, activation) run
their statements, compiled once by SQLAlchemy's asyncpg dialect, on an asyncpg pool of their own;
on SQLite they go through the engine. Either way a service function sees one `Session` with the same
three calls and rows read by column name, and the statements stay SQLAlchemy's, built from the models.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from sqlalchemy import ClauseElement, Executable
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from service.db import reading, transaction, transient
from service.errors import Unavailable

Params = Mapping[str, Any]
Row = Mapping[Any, Any]
"""A row read by column name (SQLAlchemy's `RowMapping` or asyncpg's `Record`)."""
POOL_TIMEOUT_SECONDS = 5  # waiting longer for a free connection than this is `Unavailable`


class Refused(Exception):
    """A foreign key refused a statement of data-modifying CTEs: nothing it would have written is."""

    def __init__(self, constraint: str):
        super().__init__(constraint)
        self.constraint = constraint


class Session(Protocol):
    writable_ctes: bool
    """Whether a statement may hold data-modifying CTEs (PostgreSQL): several writes in one round trip."""

    async def first(self, statement: Executable, params: Params) -> Row | None: ...

    async def all(self, statement: Executable, params: Params) -> Sequence[Row]:
        """Every row; `Refused`, naming the constraint, when a foreign key refuses a statement of data-modifying
        CTEs."""

    async def execute(self, statement: Executable, params: Params) -> int:
        """Run a statement; the number of rows it changed."""


class Driver(Protocol):
    async def first(self, statement: Executable, params: Params) -> Row | None:
        """One read on its own: a session's `first` without the session (the hottest read)."""

    def reading(self) -> AbstractAsyncContextManager[Session]:
        """A session outside any transaction, for one consistent read."""

    def transaction(self) -> AbstractAsyncContextManager[Session]:
        """A session in a transaction: committed on success, rolled back on any error."""

    def single_write(self) -> AbstractAsyncContextManager[Session]:
        """A session for reads and then one write that commits whole or not at all: outside a transaction
        where that write is one statement (writable CTEs), so that it costs no BEGIN and COMMIT round trips;
        in a transaction where it takes several."""

    async def close(self) -> None: ...


def create_driver(engine: AsyncEngine, pool_size: int = 20) -> Driver:
    if engine.dialect.driver == "asyncpg":
        return AsyncpgDriver(engine, pool_size)
    return EngineDriver(engine)


# --- SQLite (and any other engine): the statements through SQLAlchemy


class EngineSession:
    """The session over an SQLAlchemy connection: how code outside the hot paths shares their helpers."""

    # A write per statement, even on PostgreSQL: `EngineDriver.single_write` is a transaction anyway.
    writable_ctes = False

    def __init__(self, connection: AsyncConnection):
        self._connection = connection

    async def first(self, statement: Executable, params: Params) -> Row | None:
        row = (await self._connection.execute(statement, params)).first()
        return None if row is None else row._mapping

    async def all(self, statement: Executable, params: Params) -> Sequence[Row]:
        return (await self._connection.execute(statement, params)).mappings().all()

    async def execute(self, statement: Executable, params: Params) -> int:
        return (await self._connection.execute(statement, params)).rowcount


class EngineDriver:
    def __init__(self, engine: AsyncEngine):
        self._engine = engine

    async def first(self, statement: Executable, params: Params) -> Row | None:
        async with self.reading() as session:
            return await session.first(statement, params)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Session]:
        async with reading(self._engine) as connection:
            yield EngineSession(connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with transaction(self._engine) as connection:
            yield EngineSession(connection)

    def single_write(self) -> AbstractAsyncContextManager[Session]:
        return self.transaction()

    async def close(self) -> None:
        """The engine belongs to whoever made it."""


# --- PostgreSQL: the compiled statements on asyncpg


@dataclass(frozen=True)
class _Compiled:
    sql: str
    arguments: Callable[[Params], list[Any]]


def _compile(statement: Executable, dialect: Any) -> _Compiled:
    """The SQL and the positional arguments of a statement, as SQLAlchemy would send them to asyncpg:
    each value through its type's bind processor, and values fixed in the statement filled in."""
    assert isinstance(statement, ClauseElement), "a statement built with SQLAlchemy Core"
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None, "asyncpg's numbered parameters"
    getters: list[tuple[str | None, Any, Any]] = []  # (name, or None and the fixed value), bind processor
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.required:
            getters.append((name, None, process))
        else:
            getters.append((None, process(bind.value) if process else bind.value, None))

    def arguments(params: Params) -> list[Any]:
        values: list[Any] = []
        for name, fixed, process in getters:
            if name is None:
                values.append(fixed)
            else:
                value = params[name]
                values.append(process(value) if process and value is not None else value)
        return values

    return _Compiled(compiled.string, arguments)


class _AsyncpgSession:
    writable_ctes = True

    def __init__(self, connection: asyncpg.Connection, compile: Callable[[Executable], _Compiled]):
        self._connection = connection
        self._compile = compile

    async def first(self, statement: Executable, params: Params) -> Row | None:
        compiled = self._compile(statement)
        return await self._connection.fetchrow(compiled.sql, *compiled.arguments(params))

    async def all(self, statement: Executable, params: Params) -> Sequence[Row]:
        compiled = self._compile(statement)
        try:
            return await self._connection.fetch(compiled.sql, *compiled.arguments(params))
        except asyncpg.ForeignKeyViolationError as exc:
            raise Refused(exc.constraint_name) from exc

    async def execute(self, statement: Executable, params: Params) -> int:
        compiled = self._compile(statement)
        status = await self._connection.execute(compiled.sql, *compiled.arguments(params))
        return int(status.rpartition(" ")[2])  # "UPDATE 1"


async def _roll_back_if_open(connection: asyncpg.Connection) -> None:
    """What a returned connection needs here: asyncpg's default reset (unlisten, unlock, RESET ALL)
    is a round trip on every release, for state this service never sets."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


class AsyncpgDriver:
    def __init__(self, engine: AsyncEngine, pool_size: int):
        self._engine = engine
        self._dialect = engine.dialect
        self._dsn = make_url(engine.url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._checked_out = 0  # connections of the pool asked for and not yet back: the pool is this driver's alone
        self._compiled: dict[Executable, _Compiled] = {}

    def _compile(self, statement: Executable) -> _Compiled:
        """Compiled on first use and kept: hot-path statements are built once, at import or per key count."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = _compile(statement, self._dialect)
        return compiled

    async def _connected_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            # min_size=0: making the pool connects nothing, so it cannot fail; connections come on demand.
            pool = await asyncpg.create_pool(
                self._dsn, min_size=0, max_size=self._pool_size, reset=_roll_back_if_open, timeout=5, command_timeout=15
            )
            if self._pool is None:
                self._pool = pool
            else:  # another request made one meanwhile
                await pool.close()
        return self._pool

    async def _acquire(self) -> tuple[asyncpg.Pool, asyncpg.Connection]:
        pool = await self._connected_pool()
        # Counted from the moment it is asked for, so that requests arriving while one connects are counted.
        self._checked_out += 1
        try:
            if self._checked_out <= self._pool_size:
                # One is free, so acquiring does not wait: no timer to set and cancel (~10 µs of a read).
                connection = await pool.acquire()
            else:
                # Not `acquire(timeout=)`: asyncpg runs that through `wait_for`, a task per request.
                async with asyncio.timeout(POOL_TIMEOUT_SECONDS):
                    connection = await pool.acquire()
        except BaseException:
            self._checked_out -= 1
            raise
        return pool, connection

    async def _release(self, pool: asyncpg.Pool, connection: asyncpg.Connection) -> None:
        try:
            await pool.release(connection)
        finally:
            self._checked_out -= 1

    async def _unavailable_if_transient(self, exc: Exception) -> None:
        if transient(exc):
            # The server restarted: every pooled connection is dead too, the engine's as well as ours.
            if self._pool is not None:
                await self._pool.expire_connections()
            await self._engine.dispose(close=False)
            raise Unavailable() from exc

    @asynccontextmanager
    async def _session(self, in_transaction: bool) -> AsyncIterator[Session]:
        try:
            pool, connection = await self._acquire()
            try:
                if in_transaction:
                    async with connection.transaction():
                        yield _AsyncpgSession(connection, self._compile)
                else:
                    yield _AsyncpgSession(connection, self._compile)
            finally:
                await self._release(pool, connection)
        except Exception as exc:
            await self._unavailable_if_transient(exc)
            raise

    async def first(self, statement: Executable, params: Params) -> Row | None:
        compiled = self._compile(statement)
        try:
            pool, connection = await self._acquire()
            try:
                return await connection.fetchrow(compiled.sql, *compiled.arguments(params))
            finally:
                await self._release(pool, connection)
        except Exception as exc:
            await self._unavailable_if_transient(exc)
            raise

    def reading(self) -> AbstractAsyncContextManager[Session]:
        return self._session(in_transaction=False)

    def transaction(self) -> AbstractAsyncContextManager[Session]:
        return self._session(in_transaction=True)

    def single_write(self) -> AbstractAsyncContextManager[Session]:
        return self._session(in_transaction=False)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
