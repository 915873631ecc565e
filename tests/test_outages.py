"""Database outages: callers get 503 `unavailable` at once, nothing is half-written, and the
service recovers by itself when PostgreSQL is back, without a restart."""

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import date

import pytest

from service import ledger, migrate
from service.db import create_engine
from tests.api import Api
from tests.conftest import make_settings
from tests.throwaway_postgres import Cluster, throwaway_cluster

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL tests are off")
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


async def test_a_restart_under_load_loses_and_invents_nothing(api: Api, cluster: Cluster) -> None:
    await api.installation("LOAD", purchased_on="2026-11-01")
    keys = await api.keys(40)

    async def restart() -> None:
        await asyncio.sleep(0.05)
        await asyncio.to_thread(cluster.stop)
        await asyncio.to_thread(cluster.start)

    results = await asyncio.gather(restart(), *(api.activate("LOAD", [key]) for key in keys))
    responses = results[1:]

    assert {r.status_code for r in responses} <= {201, 503}
    # A 503 may hide a commit the client never heard of: that is what a replay is for.
    retried = [
        await api.activate("LOAD", [key]) for key, r in zip(keys, responses, strict=True) if r.status_code == 503
    ]
    assert {r.status_code for r in retried} <= {200, 201}
    assert (await api.support("LOAD"))["months_granted"] == 12 + 14 * len(keys)
    assert await ledger.verify(api.engine) == []
