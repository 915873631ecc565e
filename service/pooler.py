"""Behind a transaction-mode pooler (PgBouncer `pool_mode = transaction`, `DATABASE_TRANSACTION_POOLER=true`):
each transaction, and each statement outside one, may run on another server connection, so a named prepared
statement, which lives on the one server connection that prepared it, cannot be used again.

asyncpg's answer (`statement_cache_size=0`) costs every statement two round trips: Parse and Describe to learn
its types, then Parse again with Bind and Execute. `UnnamedStatements` keeps what the first round trip learned
(the statement's types and codecs, per connection, as asyncpg's own cache does), so that every later execution
is one round trip of unnamed Parse, Bind, Execute and Sync: nothing outlives its Sync on the server, and the
server parses and plans the statement each time, as it would a simple query.
"""

from typing import Any

import asyncpg

STATEMENTS_KEPT = 512
"""Statements whose description a connection keeps: more than the service has (one per statement built once,
one per key count of the activation's), so that none is described twice."""


class UnnamedStatements(asyncpg.Connection):
    """An asyncpg connection (made with `statement_cache_size=0`) that remembers its unnamed statements'
    descriptions. Relies on asyncpg's `_get_statement` (0.29 to 0.32): an unnamed statement of a connection
    without a cache comes back marked unprepared, which makes every execution of it send its Parse again."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._described: dict[tuple[Any, ...], Any] = {}

    async def _get_statement(
        self,
        query: str,
        timeout: float | None,
        *,
        named: str | bool | None = False,
        use_cache: bool = True,
        ignore_custom_codec: bool = False,
        record_class: Any = None,
    ) -> Any:
        if named:  # `Connection.prepare`: the caller asked for a statement of its own
            return await super()._get_statement(
                query,
                timeout,
                named=named,
                use_cache=use_cache,
                ignore_custom_codec=ignore_custom_codec,
                record_class=record_class,
            )
        key = (query, record_class, ignore_custom_codec)
        statement = self._described.get(key)
        if statement is None:
            statement = await super()._get_statement(
                query, timeout, use_cache=False, ignore_custom_codec=ignore_custom_codec, record_class=record_class
            )
            assert not statement.name, "an unnamed statement"
            if len(self._described) >= STATEMENTS_KEPT:
                del self._described[next(iter(self._described))]
            self._described[key] = statement
        return statement

    def _drop_local_statement_cache(self) -> None:
        """What asyncpg does when a type or the schema changed under its statements: ours are as stale."""
        super()._drop_local_statement_cache()
        self._described.clear()
