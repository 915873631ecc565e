"""Webhooks delivered by several `timex-licensing worker` processes on one PostgreSQL: each event once, never
one attempt by two workers at once (they claim with `SELECT … FOR UPDATE SKIP LOCKED`)."""

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import date

import pytest
from sqlalchemy import text

from service.db import create_engine
from tests.api import Api
from tests.conftest import empty_tables, make_settings
from tests.receiver import Receiver
from tests.servers import running_worker

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

EVENTS = 200


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Api]:
    settings = make_settings(postgres_url, webhook_allowed_hosts=["127.0.0.1"])
    engine = create_engine(settings.database_url)
    async with Api.started(settings, engine, today=date(2026, 11, 24)) as api:
        yield api
        await empty_tables(engine)
    await engine.dispose()


async def _undelivered(api: Api) -> int:
    async with api.engine.connect() as connection:
        pending = await connection.scalar(text("SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'"))
        undispatched = await connection.scalar(text("SELECT count(*) FROM webhook_events WHERE dispatched_at IS NULL"))
    return int(pending or 0) + int(undispatched or 0)


async def test_two_workers_on_one_database_deliver_every_event_exactly_once(pg: Api, postgres_url: str) -> None:
    async with Receiver.running() as receiver:
        response = await pg.post(
            "/v1/webhook-endpoints",
            {"url": receiver.url, "event_types": ["installation.registered"]},
            headers=pg.admin,
        )
        assert response.status_code == 201, response.text
        for n in range(EVENTS):
            await pg.installation(f"I{n}")
        env = {
            **os.environ,
            "DATABASE_URL": postgres_url,
            "WEBHOOK_ALLOWED_HOSTS": json.dumps(["127.0.0.1"]),
            "WEBHOOK_POLL_SECONDS": "0.05",
        }

        with running_worker(env), running_worker(env):
            deadline = time.monotonic() + 120  # a bound on a broken run, not a measure of this one
            while await _undelivered(pg) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)

    counts = receiver.counts()
    assert len(counts) == EVENTS
    assert set(counts.values()) == {1}, "an event was delivered twice"
    assert await _undelivered(pg) == 0
