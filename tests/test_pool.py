"""One pool per process on PostgreSQL, holding `DATABASE_POOL_SIZE` connections whatever the mix of calls; a
conflict between transactions is retried, and never costs the pool its connections."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from service.driver import APPLICATION_NAME
from tests.api import Api
from tests.conftest import make_settings, service
from tests.held_rows import WAIT_AT_MOST_SECONDS, installation_held

pytestmark = pytest.mark.anyio

# The backends connected to this database, but for the one asking.
_BACKENDS = (
    "SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def service_on(database_url: str, pool_size: int) -> AbstractAsyncContextManager[Api]:
    return service(make_settings(database_url, database_pool_size=pool_size, activation_failure_limit=1000))


@asynccontextmanager
async def watching(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, to the service's database."""
    connection = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        yield connection
    finally:
        await connection.close()


async def backends(watcher: asyncpg.Connection, service_only: bool = False) -> set[int]:
    """Every other backend on the database, or only the service's (by the name its connections give)."""
    await watcher.execute("SELECT pg_stat_clear_snapshot()")
    rows = await watcher.fetch(_BACKENDS)
    return {row["pid"] for row in rows if not service_only or row["application_name"] == APPLICATION_NAME}


async def test_every_call_hot_or_cold_shares_one_pool_of_database_pool_size_connections(database_url: str) -> None:
    async with service_on(database_url, pool_size=3) as api, watching(database_url) as watcher:
        await api.installation("ACME", purchased_on="2026-11-01")
        keys = await api.keys(20)
        seen: set[int] = set()
        most_at_once = 0

        async def count_while(calls: asyncio.Future) -> None:
            nonlocal most_at_once
            while not calls.done():
                now = await backends(watcher)
                seen.update(now)
                most_at_once = max(most_at_once, len(now))
                await asyncio.sleep(0.005)

        calls = asyncio.gather(
            *(api.get("/v1/installations/ACME/support") for _ in range(10)),  # the hot read
            *(api.get("/v1/installations/ACME/quote") for _ in range(10)),
            *(api.activate("ACME", [key]) for key in keys),  # the hot write
            *(api.get("/v1/keys", headers=api.admin) for _ in range(10)),  # cold reads
            *(api.get("/v1/installations/ACME", headers=api.admin) for _ in range(10)),
            *(api.installation(f"NEW-{i}", purchased_on="2026-11-01") for i in range(10)),  # cold writes
            *(api.get("/readyz") for _ in range(10)),
        )
        await count_while(calls)
        answers = await calls
        seen.update(await backends(watcher))

    statuses = {a.status_code for a in answers if not isinstance(a, dict)}
    assert statuses <= {200, 201}, "every call answered"
    assert 1 <= most_at_once <= 3
    assert len(seen) <= 3, "no connection beyond the pool's three, ever"


async def test_a_deadlock_is_retried_and_the_request_succeeds_on_the_same_connection(database_url: str) -> None:
    """Another client locks an activation's keys, the void locks the installation and waits for the keys, the
    other client asks for the installation: PostgreSQL breaks the deadlock by failing the void's transaction
    (the other client waits far longer before it looks for deadlocks). The void is tried again, and succeeds,
    on the pool's one connection: a conflict is not a lost server."""
    async with service_on(database_url, pool_size=1) as api, watching(database_url) as other:
        await api.installation("ACME", purchased_on="2026-11-01")
        activation = (await api.activate("ACME", await api.keys(2))).json()
        pool_before = await backends(other)

        await other.execute("BEGIN")
        await other.execute("SET LOCAL deadlock_timeout = '60s'")
        await other.execute(
            "SELECT 1 FROM license_keys WHERE activation_id = $1 FOR UPDATE", activation["activation_id"]
        )
        void = asyncio.create_task(
            api.post(f"/v1/activations/{activation['activation_id']}/void", {"reason": "refund"}, headers=api.admin)
        )
        async with asyncio.timeout(WAIT_AT_MOST_SECONDS):
            while not await other.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ):
                await asyncio.sleep(0.01)
        await other.execute("SELECT 1 FROM installations WHERE code = 'ACME' FOR UPDATE")  # the deadlock
        await other.execute("ROLLBACK")
        answer = await void
        pool_after = await backends(other)

    assert answer.status_code == 200, answer.text
    assert answer.json()["support_end"] == "2027-11-01"
    assert pool_after == pool_before and len(pool_before) == 1, "the pool kept its connection"


async def test_a_statement_over_its_time_is_503_for_its_request_alone_and_the_pool_stays(database_url: str) -> None:
    """The server cancels a statement past `statement_timeout` (here 300 ms for the connections made during the
    test): that request is `503`, nothing is written, and the next one runs on the same connection."""
    database = make_url(database_url).database
    async with watching(database_url) as w:
        await w.execute(f'ALTER DATABASE "{database}" SET statement_timeout = 300')
        try:
            async with service_on(database_url, pool_size=1) as api:
                await api.installation("ACME", purchased_on="2026-11-01")
                [key] = await api.keys(1)
                pool_before = await backends(w, service_only=True)

                async with installation_held(database_url, "ACME"):
                    waited_too_long = await api.activate("ACME", [key])
                after = await api.activate("ACME", [key])
                pool_after = await backends(w, service_only=True)
        finally:
            await w.execute(f'ALTER DATABASE "{database}" RESET statement_timeout')

    assert (waited_too_long.status_code, waited_too_long.json()["code"]) == (503, "unavailable")
    assert after.status_code == 201, "the refused activation wrote nothing: the key is still fresh"
    assert pool_after == pool_before and len(pool_before) == 1, "the pool kept its connection"
