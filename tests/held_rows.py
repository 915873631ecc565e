"""Another client holding an installation's row, or a key's (PostgreSQL), so that a test decides when activations of
it write.

An activation reads the installation without a lock, then writes in one statement that first locks its row
(`FOR UPDATE`): while another client holds the row, every activation of it has read and waits in its write,
its commit in flight. A test waits until it sees them waiting, arranges what it needs, and lets go.

A whole table held (`table_held`) stops whatever reads it: a webhook worker's pass, stuck in a database call."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url

# This database's sessions waiting for a lock: on the held row, or queued behind one that waits for it.
_WAITING = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
WAIT_AT_MOST_SECONDS = 60  # not a measure of anything: a test whose requests never wait fails instead of hanging


class HeldRow:
    def __init__(self, connection: asyncpg.Connection):
        self._connection = connection

    async def until_waiting(self, sessions: int) -> None:
        """Until `sessions` other sessions wait for a lock."""
        async with asyncio.timeout(WAIT_AT_MOST_SECONDS):
            while await self._connection.fetchval(_WAITING) < sessions:
                # Within a transaction the activity statistics are read once and kept: read them afresh.
                await self._connection.execute("SELECT pg_stat_clear_snapshot()")
                await asyncio.sleep(0.01)

    async def is_locked(self, key_id: str) -> bool:
        """Whether another session holds key `key_id`'s row: this one cannot lock it without waiting."""
        # In a savepoint rolled back at once, so that what it locks is let go.
        await self._connection.execute("SAVEPOINT probe")
        try:
            await self._connection.execute("SELECT 1 FROM license_keys WHERE id = $1::uuid FOR UPDATE NOWAIT", key_id)
        except asyncpg.exceptions.LockNotAvailableError:
            return True
        finally:
            await self._connection.execute("ROLLBACK TO SAVEPOINT probe")
        return False


@asynccontextmanager
async def _held(database_url: str, statement: str, *values: object) -> AsyncIterator[HeldRow]:
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("BEGIN")
        await connection.execute(statement, *values)
        yield HeldRow(connection)
    finally:
        # Not `close()`, which would wait for a server that a test may have stopped: the server rolls back.
        connection.terminate()


def installation_held(database_url: str, code: str) -> AbstractAsyncContextManager[HeldRow]:
    """Installation `code`'s row locked by a connection of its own, in a transaction open until the block ends."""
    return _held(database_url, "SELECT 1 FROM installations WHERE code = $1 FOR UPDATE", code)


def key_held(database_url: str, key_id: str) -> AbstractAsyncContextManager[HeldRow]:
    """Key `key_id`'s row locked by a connection of its own, in a transaction open until the block ends."""
    return _held(database_url, "SELECT 1 FROM license_keys WHERE id = $1::uuid FOR UPDATE", key_id)


def table_held(database_url: str, table: str) -> AbstractAsyncContextManager[HeldRow]:
    """`table` locked against every reader (`ACCESS EXCLUSIVE`) by a connection of its own, until the block ends."""
    return _held(database_url, f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
