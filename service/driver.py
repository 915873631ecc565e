"""The one way into the database: SQLAlchemy Core statements, built from the models, run by a `Driver`.

A service function gets the process's `Driver` and opens a `Session` on it (`reading`, `transaction`,
`single_write`), or makes one read with `Driver.first`. Each process has one pool of `DATABASE_POOL_SIZE`
connections. The statements, compiled once by SQLAlchemy's asyncpg dialect, run on asyncpg connections: through
SQLAlchemy's `AsyncConnection` a single-row read costs about twice the CPU (greenlet switches on checkout,
execute and release), and on the support-state read that is most of the request.

What goes wrong is said in the service's words (`Duplicate`, `Refused`, `Contended`, `Unavailable`), so that no
service function sees the driver's own errors. Only a lost or refused connection drops the pool.
"""

import asyncio
import collections
import functools
import random
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

import asyncpg
from sqlalchemy import ClauseElement, ColumnDefault, Executable
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.sql.compiler import SQLCompiler

from service.db import async_url
from service.errors import DomainError, Unavailable
from service.models import Base
from service.pooler import UnnamedStatements

Params = Mapping[str, Any]
R = TypeVar("R", bound=tuple[Any, ...])
POOL_TIMEOUT_SECONDS = 5  # waiting longer for a free connection than this is `Unavailable`
CONFLICT_ATTEMPTS = 4  # a transaction that keeps losing to others this often is `Unavailable`
APPLICATION_NAME = "timex-licensing"
"""How the service's connections are named to PostgreSQL (`pg_stat_activity.application_name`)."""


class Refused(Exception):
    """A foreign key refused a statement of data-modifying CTEs: nothing it would have written is."""

    def __init__(self, constraint: str):
        super().__init__(constraint)
        self.constraint = constraint


class Duplicate(Exception):
    """A unique constraint, named by `constraint`, refused a write, which is rolled back."""

    def __init__(self, constraint: str, detail: str):
        super().__init__(detail)
        self.constraint = constraint


class Contended(Exception):
    """The transaction lost to a concurrent one (SQLSTATE class 40: a deadlock, a serialization failure) and was
    rolled back: the same work may be tried again (see `retried`)."""


class Rows(Generic[R]):
    """A statement that answers rows, and their type: a `NamedTuple` whose fields are the statement's columns, in
    their order (checked here, when the statement is built), so that a row is read by attribute, typed."""

    __slots__ = ("make", "statement")

    def __init__(self, statement: Executable, row: type[R]):
        columns = tuple(getattr(statement, "exported_columns", {}).keys())
        fields = getattr(row, "_fields", None)
        if columns != fields:
            raise TypeError(f"{row.__name__} has the fields {fields}, its statement the columns {columns}")
        self.statement = statement
        self.make: Callable[[Iterable[Any]], R] = getattr(row, "_make")  # noqa: B009 (a NamedTuple's, not tuple's)


class Session(Protocol):
    async def first(self, query: Rows[R], params: Params) -> R | None: ...

    async def all(self, query: Rows[R], params: Params) -> list[R]:
        """Every row; `Refused`, naming the constraint, when a foreign key refuses a statement of data-modifying
        CTEs."""

    async def execute(self, statement: Executable, params: Params) -> int:
        """Run a statement; the number of rows it changed."""

    async def copy(self, model: type[Base], columns: Sequence[str], records: Sequence[tuple[Any, ...]]) -> None:
        """Insert many rows, given as tuples of `columns`, by COPY (100,000 rows as one statement, where row by row
        they cost the database about 45 µs each)."""


class Driver(Protocol):
    plans_every_statement: bool
    """Behind a transaction-mode pooler: no statement is prepared, so PostgreSQL plans each one every time."""

    async def first(self, query: Rows[R], params: Params) -> R | None:
        """One read on its own: a session's `first` without the session (the hottest read)."""

    def reading(self) -> AbstractAsyncContextManager[Session]:
        """A session outside any transaction, for one consistent read."""

    def transaction(self) -> AbstractAsyncContextManager[Session]:
        """A session in a transaction: committed on success, rolled back on any error."""

    def single_write(self) -> AbstractAsyncContextManager[Session]:
        """A session for reads and then one write, a single statement (data-modifying CTEs where it writes
        several tables), which commits whole or not at all: outside a transaction, so that it costs no BEGIN and
        COMMIT round trips."""

    async def close(self) -> None: ...


def create_driver(url: str, *, pool_size: int, transaction_pooler: bool = False) -> Driver:
    """The process's way into the database at `url`, with at most `pool_size` connections; `transaction_pooler`:
    `url` is a transaction-mode pooler, where no prepared statement may outlive its transaction (`service.pooler`)."""
    return AsyncpgDriver(async_url(url), pool_size, transaction_pooler=transaction_pooler)


P = ParamSpec("P")
T = TypeVar("T")


def retried(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """For a service function whose every attempt is one transaction, or one statement that stands alone:
    an attempt that lost to a concurrent transaction (`Contended`, rolled back whole) is made again, after a
    random pause that grows with each try, so that the two do not collide again; `Unavailable` after
    `CONFLICT_ATTEMPTS`."""

    @functools.wraps(function)
    async def attempts(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return await function(*args, **kwargs)
            except Contended as exc:
                if attempt == CONFLICT_ATTEMPTS:
                    raise Unavailable() from exc
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    return attempts


# --- What went wrong, in the service's words

_LOST = (
    OSError,  # refused, reset, unreachable
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.AdminShutdownError,  # 57P01
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up
    asyncpg.exceptions.TooManyConnectionsError,  # 53300: no connection left, for the server or the role
)
_FOR_THIS_REQUEST = (
    TimeoutError,  # a statement over `command_timeout`: asyncpg cancels it, the connection stays good
    asyncpg.exceptions.QueryCanceledError,  # 57014: statement_timeout on the server
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _lost(exc: BaseException) -> bool:
    """Whether the connection is gone or was refused: the server restarted, or refused a connection."""
    return any(
        isinstance(cause, _LOST) and not isinstance(cause, TimeoutError)  # an OSError, but the connection is good
        for cause in _causes(exc)
    )


def _translated(exc: Exception) -> Exception | None:
    """The driver's error as one of ours, or None for one that is a bug (an error of SQL or of a value), or
    already ours."""
    if isinstance(exc, DomainError | Duplicate | Refused | Contended):
        return None
    for cause in _causes(exc):
        if isinstance(cause, asyncpg.exceptions.UniqueViolationError):
            return Duplicate(cause.constraint_name, str(cause))
        if isinstance(cause, asyncpg.exceptions.TransactionRollbackError):
            return Contended(str(cause))
        if isinstance(cause, _FOR_THIS_REQUEST):
            return Unavailable()
    return Unavailable() if _lost(exc) else None


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
    # An insert's column left to its model's Python-side default (`default=uuid.uuid4`): made here for each row,
    # as SQLAlchemy's own execution would, unless the call gives it.
    defaults = {column.key: column.default for column in compiled.insert_prefetch if column.default is not None}
    getters: list[tuple[str | None, Any, Any]] = []  # (name, or None and the fixed value), bind processor
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.required or name in defaults:
            getters.append((name, None, process))
        else:
            getters.append((None, process(bind.value) if process else bind.value, None))

    def arguments(params: Params) -> list[Any]:
        values: list[Any] = []
        for name, fixed, process in getters:
            if name is None:
                values.append(fixed)
                continue
            if name in params:
                value = params[name]
            else:
                default = defaults[name]
                assert isinstance(default, ColumnDefault), "a model's default is a value or a function"
                value = default.arg(None) if default.is_callable else default.arg
            values.append(process(value) if process and value is not None else value)
        return values

    return _Compiled(compiled.string, arguments)


class _AsyncpgSession:
    def __init__(self, connection: asyncpg.Connection, compile: Callable[[Executable], _Compiled]):
        self._connection = connection
        self._compile = compile

    async def first(self, query: Rows[R], params: Params) -> R | None:
        compiled = self._compile(query.statement)
        record = await self._connection.fetchrow(compiled.sql, *compiled.arguments(params))
        return None if record is None else query.make(record)

    async def all(self, query: Rows[R], params: Params) -> list[R]:
        compiled = self._compile(query.statement)
        try:
            records = await self._connection.fetch(compiled.sql, *compiled.arguments(params))
        except asyncpg.ForeignKeyViolationError as exc:
            raise Refused(exc.constraint_name) from exc
        return [query.make(record) for record in records]

    async def execute(self, statement: Executable, params: Params) -> int:
        compiled = self._compile(statement)
        status = await self._connection.execute(compiled.sql, *compiled.arguments(params))
        return int(status.rpartition(" ")[2])  # "UPDATE 1"

    async def copy(self, model: type[Base], columns: Sequence[str], records: Sequence[tuple[Any, ...]]) -> None:
        await self._connection.copy_records_to_table(model.__tablename__, columns=list(columns), records=records)


async def _read_uuids_as_python_uuids(connection: asyncpg.Connection) -> None:
    """asyncpg reads a UUID as its own class; the service compares, hashes and serializes `uuid.UUID`s."""
    await connection.set_type_codec(
        "uuid",
        schema="pg_catalog",
        encoder=lambda value: (value if isinstance(value, uuid.UUID) else uuid.UUID(value)).bytes,
        decoder=lambda data: uuid.UUID(bytes=data),
        format="binary",
    )


class _Pool:
    """The driver's connections: at most `size`, each made when first needed and kept; the one returned last is
    taken first. asyncpg's own pool cost 70 µs of CPU a checkout (its release runs as a task of its own, shielded,
    under a timeout, and arms an inactivity timer): a third of a support-state read. A connection comes back as
    it went out, or is closed: `release` is told whether its last use may have left a statement running."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], size: int):
        self._connect = connect
        self._size = size
        self._idle: list[asyncpg.Connection] = []
        self._waiting: collections.deque[asyncio.Future[asyncpg.Connection | None]] = collections.deque()
        self._opened = 0  # connections open, being opened, or whose opening is promised to one waiting
        self._generation = 0
        self._made_in: dict[asyncpg.Connection, int] = {}  # each open connection's generation
        self._closed = False

    async def acquire(self) -> asyncpg.Connection:
        if self._closed:
            raise asyncpg.InterfaceError("the pool is closed")
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():
                return connection
            self._made_in.pop(connection, None)  # lost while idle (the server restarted): made again below
            self._opened -= 1
        if self._opened < self._size:
            self._opened += 1
            return await self._open()
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            # Only a wait is timed: a timer set and cancelled on every checkout was ~10 µs of a read.
            async with asyncio.timeout(POOL_TIMEOUT_SECONDS):
                handed = await waiter
        except BaseException:  # given up (its timeout): what was handed over meanwhile goes to the next in line
            if not waiter.done():
                self._waiting.remove(waiter)
            elif not waiter.cancelled() and (connection := waiter.result()) is not None:
                self._give(connection)
            elif not waiter.cancelled():
                self._opened -= 1
                self._room()
            raise
        return handed if handed is not None else await self._open()

    async def _open(self) -> asyncpg.Connection:
        """A new connection, in room already counted."""
        generation = self._generation
        try:
            connection = await self._connect()
        except BaseException:
            self._opened -= 1
            self._room()
            raise
        self._made_in[connection] = generation
        return connection

    def release(self, connection: asyncpg.Connection, *, reusable: bool) -> None:
        """Back to the pool; or closed, when its use may have left a statement running (`reusable` false), it is
        still in a transaction, or it belongs to an expired generation or a closed pool."""
        if (
            reusable
            and not self._closed
            and not connection.is_closed()
            and not connection.is_in_transaction()
            and self._made_in.get(connection) == self._generation
        ):
            self._give(connection)
            return
        self._made_in.pop(connection, None)
        connection.terminate()
        self._opened -= 1
        self._room()

    def _give(self, connection: asyncpg.Connection) -> None:
        """To the first request waiting, or kept."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _room(self) -> None:
        """Room for one more connection: promised to the first request waiting, which opens it."""
        while self._waiting and self._opened < self._size:
            waiter = self._waiting.popleft()
            if not waiter.done():
                self._opened += 1
                waiter.set_result(None)
                return

    def expire(self) -> None:
        """The server restarted, or refused: every connection is as dead. Those idle are closed now, those in use
        when they come back."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for connection in idle:
            self.release(connection, reusable=False)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._made_in.pop(connection, None)
            self._opened -= 1
            await connection.close()


def _may_be_running(exc: BaseException | None) -> bool:
    """Whether a statement may still be running on the connection its use ended with `exc`: given up (its timeout,
    a cancelled request) or cut off. An error PostgreSQL answered, or one of the service's own, leaves it idle."""
    return exc is not None and (
        not isinstance(exc, Exception)
        or isinstance(exc, (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError))
    )


class _Checkout:
    """A connection of the pool for an `async with`, given back as its use left it (`_may_be_running`); a class,
    not a generator, as it wraps the hottest read."""

    __slots__ = ("_connection", "_pool")

    def __init__(self, pool: _Pool):
        self._pool = pool

    async def __aenter__(self) -> asyncpg.Connection:
        self._connection = await self._pool.acquire()
        return self._connection

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        self._pool.release(self._connection, reusable=not _may_be_running(exc))


class AsyncpgDriver:
    def __init__(self, url: str, pool_size: int, *, transaction_pooler: bool = False):
        self.plans_every_statement = transaction_pooler
        self._dialect = asyncpg_dialect()
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        # Making the pool connects nothing, so it cannot fail; connections come on demand.
        self._pool = _Pool(self._connect, pool_size)
        # Kept while the statement lives: those of the hot paths are built once (at import, or per key count) and
        # compiled once; one built for a single call is forgotten with it.
        self._compiled: weakref.WeakKeyDictionary[Executable, _Compiled] = weakref.WeakKeyDictionary()

    def _compile(self, statement: Executable) -> _Compiled:
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = _compile(statement, self._dialect)
        return compiled

    async def _connect(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(
            self._dsn,
            timeout=5,
            command_timeout=15,
            # client_encoding as the server names it: asyncpg's own 'utf-8' differs from the server's `UTF8` as
            # PgBouncer compares them, which then sends a SET client_encoding before every transaction.
            server_settings={"application_name": APPLICATION_NAME, "client_encoding": "UTF8"},
            **(
                {"statement_cache_size": 0, "connection_class": UnnamedStatements} if self.plans_every_statement else {}
            ),
        )
        try:
            await _read_uuids_as_python_uuids(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    async def _translate(self, exc: Exception) -> None:
        """Raise `exc` as one of ours, if it is one; the server restarted or refused: every pooled connection is
        as dead."""
        translated = _translated(exc)
        if translated is None:
            return
        if isinstance(translated, Unavailable) and _lost(exc):
            self._pool.expire()
        raise translated from exc

    @asynccontextmanager
    async def _session(self, in_transaction: bool) -> AsyncIterator[Session]:
        try:
            async with _Checkout(self._pool) as connection:
                try:
                    if in_transaction:
                        async with connection.transaction():
                            yield _AsyncpgSession(connection, self._compile)
                    else:
                        yield _AsyncpgSession(connection, self._compile)
                except asyncpg.InterfaceError as exc:
                    if not connection.is_closed():
                        raise
                    # Lost between two statements (the loss seen while the session awaited something else): asyncpg
                    # then refuses the next one as "connection is closed", without a word of the server's.
                    raise asyncpg.ConnectionDoesNotExistError("the connection was lost") from exc
        except Exception as exc:
            await self._translate(exc)
            raise

    async def first(self, query: Rows[R], params: Params) -> R | None:
        compiled = self._compile(query.statement)
        try:
            async with _Checkout(self._pool) as connection:
                record = await connection.fetchrow(compiled.sql, *compiled.arguments(params))
        except Exception as exc:
            await self._translate(exc)
            raise
        return None if record is None else query.make(record)

    def reading(self) -> AbstractAsyncContextManager[Session]:
        return self._session(in_transaction=False)

    def transaction(self) -> AbstractAsyncContextManager[Session]:
        return self._session(in_transaction=True)

    def single_write(self) -> AbstractAsyncContextManager[Session]:
        return self._session(in_transaction=False)

    async def close(self) -> None:
        await self._pool.close()
