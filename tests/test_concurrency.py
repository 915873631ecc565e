"""Integrity under concurrency, on PostgreSQL with real commits and many connections: a key is
used once, no month is lost or invented, and the ledger explains every installation."""

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import date
from uuid import UUID

import httpx
import pytest

from service import ledger
from service.db import create_engine
from tests.api import Api
from tests.conftest import empty_tables, make_settings
from tests.held_rows import installation_held, key_held
from tests.servers import running_server

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[False, True], ids=["prepared", "planned each time"])
async def pg(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """Each guarantee both ways the service writes an activation: its prepared statement, and (as behind a
    transaction-mode pooler, where nothing is prepared) the database's function that mirrors it."""
    # Dozens of activations at once from one address: the limit counts those in flight.
    settings = make_settings(database_url, activation_failure_limit=1000, database_transaction_pooler=request.param)
    engine = create_engine(settings.database_url)
    async with Api.started(settings, engine, today=date(2026, 11, 24)) as api:
        yield api
        assert await ledger.verify(driver=api.driver) == [], "the ledger does not explain every installation"
        await empty_tables(engine)
    await engine.dispose()


async def test_forty_concurrent_activations_on_one_installation_all_count(pg: Api) -> None:
    await pg.installation("ACME", purchased_on="2026-11-01")
    keys = await pg.keys(40)

    responses = await asyncio.gather(*(pg.activate("ACME", [key]) for key in keys))

    assert [r.status_code for r in responses] == [201] * 40
    assert (await pg.support("ACME"))["months_granted"] == 12 + 40 * 14


async def test_one_key_raced_to_twenty_installations_is_used_once(pg: Api) -> None:
    codes = [f"I{n}" for n in range(20)]
    for code in codes:
        await pg.installation(code, purchased_on="2026-11-01")
    [key] = await pg.keys(1)

    responses = await asyncio.gather(*(pg.activate(code, [key]) for code in codes))

    assert Counter(r.status_code for r in responses) == {201: 1, 409: 19}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"key_already_used"}
    months = [(await pg.support(code))["months_granted"] for code in codes]
    assert sorted(months) == [12] * 19 + [26]


async def test_two_batches_sharing_a_key_one_wins_the_other_changes_nothing(pg: Api) -> None:
    await pg.installation("ONE", purchased_on="2026-11-01")
    await pg.installation("TWO", purchased_on="2026-11-01")
    a, shared, c = await pg.keys(3)

    responses = await asyncio.gather(pg.activate("ONE", [a, shared]), pg.activate("TWO", [shared, c]))

    assert sorted(r.status_code for r in responses) == [201, 409]
    assert sorted((await pg.key_statuses()).values()) == ["issued", "used", "used"]
    assert sorted([(await pg.support("ONE"))["months_granted"], (await pg.support("TWO"))["months_granted"]]) == [
        12,
        12 + 28,
    ]


async def test_a_replay_racing_its_original_returns_the_same_body(pg: Api) -> None:
    await pg.installation("ACME", purchased_on="2026-11-01")
    keys = await pg.keys(3)

    responses = await asyncio.gather(*(pg.activate("ACME", keys) for _ in range(4)))

    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    assert len({r.text for r in responses}) == 1
    history = (await pg.get("/v1/installations/ACME", headers=pg.admin)).json()["activations"]
    assert len(history) == 1


async def test_an_activation_overtaken_between_its_read_and_its_write_loses_no_month(
    pg: Api, database_url: str
) -> None:
    """Two activations read the same support, then write: the one overtaken writes nothing from what it read (its
    statement finds the installation moved on), and is decided again on the support the other left."""
    await pg.installation("ACME", purchased_on="2026-11-01")
    keys = await pg.keys(2)

    async with installation_held(database_url, "ACME") as held:
        both = [asyncio.create_task(pg.activate("ACME", [key])) for key in keys]
        await held.until_waiting(2)  # each has read 12 months, and waits to write
    responses = await asyncio.gather(*both)

    assert [r.status_code for r in responses] == [201, 201]
    assert (await pg.support("ACME"))["months_granted"] == 12 + 14 + 14
    earlier, later = (await pg.get("/v1/installations/ACME", headers=pg.admin)).json()["activations"]
    assert later["support_end_before"] == earlier["support_end_after"]


async def test_a_write_that_cannot_take_every_key_takes_none(pg: Api, database_url: str) -> None:
    """An activation reads the support, and before it writes, another installation takes one of its keys: its
    write takes not even the other key, and the request is refused."""
    await pg.installation("ACME", purchased_on="2026-11-01")
    await pg.installation("OTHER", purchased_on="2026-11-01")
    mine, contested = await pg.keys(2)

    async with installation_held(database_url, "ACME") as held:
        overtaken = asyncio.create_task(pg.activate("ACME", [mine, contested]))
        await held.until_waiting(1)
        other = await pg.activate("OTHER", [contested])
    refused = await overtaken

    assert other.status_code == 201
    assert (refused.status_code, refused.json()["code"]) == (409, "key_already_used")
    assert sorted((await pg.key_statuses()).values()) == ["issued", "used"]
    assert (await pg.support("ACME"))["months_granted"] == 12
    history = (await pg.get("/v1/installations/ACME", headers=pg.admin)).json()["activations"]
    assert history == []


async def _keys_by_id(api: Api, count: int) -> list[dict]:
    """Keys, as issued (`key`, `key_id`), the lowest id first."""
    response = await api.post("/v1/keys", {"count": count}, headers=api.admin)
    return sorted(response.json()["keys"], key=lambda issued: UUID(issued["key_id"]))


async def test_an_activation_locks_its_keys_in_the_order_of_their_ids(pg: Api, database_url: str) -> None:
    """Named highest id first, the keys are still locked lowest id first: waiting for the lower key, the activation
    holds neither; waiting for the higher, it holds the lower. Every path that locks several keys takes them in that
    one order, so no two of them wait on each other."""
    await pg.installation("ACME", purchased_on="2026-11-01")
    lower, higher = await _keys_by_id(pg, 2)

    async with key_held(database_url, lower["key_id"]) as held:
        activation = asyncio.create_task(pg.activate("ACME", [higher["key"], lower["key"]]))
        await held.until_waiting(1)
        holds_the_higher = await held.is_locked(higher["key_id"])
    assert (await activation).status_code == 201

    lower, higher = await _keys_by_id(pg, 2)
    async with key_held(database_url, higher["key_id"]) as held:
        activation = asyncio.create_task(pg.activate("ACME", [higher["key"], lower["key"]]))
        await held.until_waiting(1)
        holds_the_lower = await held.is_locked(lower["key_id"])
    assert (await activation).status_code == 201

    assert (holds_the_higher, holds_the_lower) == (False, True)


async def test_a_void_revokes_keys_in_the_order_of_their_ids(pg: Api, database_url: str) -> None:
    await pg.installation("ACME", purchased_on="2026-11-01")
    lowest, middle, highest = await _keys_by_id(pg, 3)
    first = (await pg.activate("ACME", [highest["key"]])).json()
    await pg.activate("ACME", [lowest["key"], middle["key"]])

    async with key_held(database_url, middle["key_id"]) as held:
        void = asyncio.create_task(
            pg.post(
                f"/v1/activations/{first['activation_id']}/void",
                {"reason": "refund", "cascade": True},
                headers=pg.admin,
            )
        )
        await held.until_waiting(1)
        locked = [await held.is_locked(key["key_id"]) for key in (lowest, highest)]
    assert (await void).status_code == 200

    assert locked == [True, False]


@pytest.fixture
def two_servers(database_url: str) -> Iterator[list[str]]:
    # Dozens of activations at once from one address: the limit counts those in flight.
    env = {**os.environ, "DATABASE_URL": database_url, "ACTIVATION_FAILURE_LIMIT": "1000"}
    with running_server(env) as first, running_server(env) as second:
        yield [first, second]


async def test_two_service_processes_on_one_database_keep_every_guarantee(
    pg: Api, two_servers: list[str], database_url: str
) -> None:
    await pg.installation("ACME", purchased_on="2026-11-01")
    codes = [f"I{n}" for n in range(10)]
    for code in codes:
        await pg.installation(code, purchased_on="2026-11-01")
    keys = await pg.keys(30)
    [contested] = await pg.keys(1)

    async with httpx.AsyncClient(timeout=30) as client:

        def post(n: int, code: str, batch: list[str]):
            return client.post(f"{two_servers[n % 2]}/v1/activations", json={"installation": code, "keys": batch})

        one_key_each = asyncio.gather(*(post(n, "ACME", [key]) for n, key in enumerate(keys)))
        contest = asyncio.gather(*(post(n, code, [contested]) for n, code in enumerate(codes)))
        replays = asyncio.gather(*(post(n, "ACME", keys[:2]) for n in range(4)))
        singles, contested_results, replayed = await asyncio.gather(one_key_each, contest, replays)

    assert Counter(r.status_code for r in contested_results) == {201: 1, 409: 9}
    assert all(r.status_code in (200, 201, 409) for r in singles + replayed)
    granted = sum(len(r.json()["periods"]) for r in singles + replayed if r.status_code == 201)
    assert (await pg.support("ACME"))["months_granted"] == 12 + 14 * granted
    verify = subprocess.run(
        [sys.executable, "-m", "service.cli", "verify"],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url},
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
