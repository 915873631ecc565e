"""Database outages: callers get 503 `unavailable` at once, nothing is half-written, and the
service recovers by itself when PostgreSQL is back, without a restart."""

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import date

import httpx
import pytest

from service import ledger, migrate
from service.db import create_engine
from tests.api import Api
from tests.conftest import make_settings
from tests.held_rows import installation_held
from tests.throwaway_postgres import Cluster, throwaway_cluster

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as cluster:
        migrate.upgrade(cluster.url, configure_logging=False)
        yield cluster


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Api]:
    # Dozens of activations at once from one address: the limit counts those in flight.
    settings = make_settings(cluster.url, activation_failure_limit=1000)
    engine = create_engine(settings.database_url)
    async with Api.started(settings, engine, today=date(2026, 11, 24)) as api:
        yield api
    await engine.dispose()


async def test_a_stopped_database_is_answered_503_and_the_service_recovers_alone(api: Api, cluster: Cluster) -> None:
    await api.installation("DOWN", purchased_on="2026-11-01")
    [key] = await api.keys(1)

    await asyncio.to_thread(cluster.stop)
    try:
        read = await api.get("/v1/installations/DOWN/support")
        write = await api.activate("DOWN", [key])
        ready = await api.get("/readyz")
        alive = await api.get("/healthz")
    finally:
        await asyncio.to_thread(cluster.start)

    for response in (read, write, ready):
        assert (response.status_code, response.json()["code"]) == (503, "unavailable")
        assert response.headers["retry-after"].isdigit()
    assert alive.status_code == 200
    assert (await api.get("/readyz")).status_code == 200
    assert (await api.support("DOWN"))["months_granted"] == 12  # the refused activation wrote nothing
    assert (await api.activate("DOWN", [key])).status_code == 201


async def replayed_until_answered(api: Api, code: str, key: str) -> httpx.Response:
    """What a client does with a 503, which may hide a commit it never heard of: it sends the activation again.
    A connection opened just before the restart may fail the first request after it: a few attempts, not one."""
    for _ in range(3):
        response = await api.activate(code, [key])
        if response.status_code != 503:
            break
    return response


async def test_a_restart_under_load_loses_and_invents_nothing(api: Api, cluster: Cluster) -> None:
    """The database restarts while activations run: some were answered before it, those of an installation
    another client holds are in their write, their commit in flight, and the rest race the restart. Once every
    503 is replayed, each key is used exactly once, and the ledger holds every activation answered, and no other."""
    await api.installation("LOAD", purchased_on="2026-11-01")
    await api.installation("HELD", purchased_on="2026-11-01")
    load_keys = await api.keys(36)
    held_keys = await api.keys(4)

    async with installation_held(cluster.url, "HELD") as held:
        held_tasks = [asyncio.create_task(api.activate("HELD", [key])) for key in held_keys]
        await held.until_waiting(len(held_keys))
        load_tasks = [asyncio.create_task(api.activate("LOAD", [key])) for key in load_keys]
        before_restart = [await answer for answer in itertools.islice(asyncio.as_completed(load_tasks), 3)]
        await asyncio.to_thread(cluster.stop)  # the load runs on meanwhile
    await asyncio.to_thread(cluster.start)
    load_answers = await asyncio.gather(*load_tasks)
    held_answers = await asyncio.gather(*held_tasks)

    assert [r.status_code for r in before_restart] == [201] * 3
    assert [r.status_code for r in held_answers] == [503] * len(held_keys)
    assert {r.status_code for r in load_answers} <= {201, 503}
    load_final = [
        r if r.status_code == 201 else await replayed_until_answered(api, "LOAD", key)
        for key, r in zip(load_keys, load_answers, strict=True)
    ]
    held_final = [await replayed_until_answered(api, "HELD", key) for key in held_keys]
    assert {r.status_code for r in load_final} <= {200, 201}
    assert [r.status_code for r in held_final] == [201] * len(held_keys)  # the write in flight was not committed

    assert (await api.support("LOAD"))["months_granted"] == 12 + 14 * len(load_keys)
    assert (await api.support("HELD"))["months_granted"] == 12 + 14 * len(held_keys)
    assert set((await api.key_statuses()).values()) == {"used"}
    answered = {r.json()["activation_id"] for r in load_final + held_final}
    ledger_ids = {
        a["activation_id"]
        for code in ("LOAD", "HELD")
        for a in (await api.get(f"/v1/installations/{code}", headers=api.admin)).json()["activations"]
    }
    assert len(answered) == len(load_keys) + len(held_keys)
    assert ledger_ids == answered
    assert await ledger.verify(driver=api.driver) == []
