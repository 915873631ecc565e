"""Webhooks delivered by real processes: several `timex-licensing worker` on one PostgreSQL, each event once, never
one attempt by two workers at once (they claim with `SELECT … FOR UPDATE SKIP LOCKED`); `serve` delivering
by itself; and a worker's liveness check, which its heartbeat passes while its loop turns and fails while it is
stuck."""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from service.auth import TokenSettings, issue_token
from service.db import create_engine
from service.settings import Settings
from tests.api import Api
from tests.conftest import empty_tables, make_settings
from tests.held_rows import WAIT_AT_MOST_SECONDS, table_held
from tests.receiver import Receiver
from tests.servers import running_server, running_worker

pytestmark = pytest.mark.anyio

EVENTS = 200


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver.running() as receiver:
        yield receiver


@pytest.fixture
async def pg(database_url: str, receiver: Receiver) -> AsyncIterator[Api]:
    settings = make_settings(database_url, webhook_allowed_hosts=[receiver.host])
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


async def test_two_workers_on_one_database_deliver_every_event_exactly_once(
    pg: Api, database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    """Both workers are running before the events happen, so that they race for every one of them."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WEBHOOK_ALLOWED_HOSTS": json.dumps([receiver.host]),
        "WEBHOOK_POLL_SECONDS": "0.02",
        "WEBHOOK_WORKER_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
    }
    response = await pg.post(
        "/v1/webhook-endpoints",
        {"url": receiver.url, "event_types": ["installation.registered"]},
        headers=pg.admin,
    )
    assert response.status_code == 201, response.text
    with running_worker(env) as first_log, running_worker(env) as second_log:
        deadline = time.monotonic() + 60  # a bound on a broken run, not a measure of this one
        while not all("worker running" in log() for log in (first_log, second_log)):
            assert time.monotonic() < deadline, first_log() + second_log()
            await asyncio.sleep(0.05)
        for n in range(EVENTS):
            await pg.installation(f"I{n}")
        while (len(receiver.received) < EVENTS or await _undelivered(pg)) and time.monotonic() < deadline + 60:
            await asyncio.sleep(0.1)
        delivered_by = [log().count(": delivered") for log in (first_log, second_log)]

    counts = receiver.counts()
    assert len(counts) == EVENTS
    assert set(counts.values()) == {1}, "an event was delivered twice"
    assert await _undelivered(pg) == 0
    assert sum(delivered_by) == EVENTS and all(delivered_by), delivered_by  # each worker took a share


async def test_serve_delivers_by_itself_when_told_to(own_database_url: str, receiver: Receiver, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": own_database_url,
        "WEBHOOK_ALLOWED_HOSTS": json.dumps([receiver.host]),
        "WEBHOOK_WORKER_IN_SERVE": "true",
        "WEBHOOK_POLL_SECONDS": "0.05",
        "WEBHOOK_WORKER_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
    }
    token = issue_token(
        TokenSettings.of(Settings(_env_file=None)), "admin", "test", datetime.now(UTC), timedelta(minutes=5)
    )
    admin = {"Authorization": f"Bearer {token}"}
    with running_server(env) as url:
        async with httpx.AsyncClient(base_url=url, headers=admin) as client:
            hook = (await client.post("/v1/webhook-endpoints", json={"url": receiver.url})).json()
            await client.post("/v1/installations", json={"code": "ACME", "purchased_on": "2025-03-15"})
            deadline = time.monotonic() + 30  # a bound on a broken run, not a measure of this one
            while not receiver.received and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

    [received] = receiver.received
    assert received.verified(hook["secret"])["data"]["code"] == "ACME"


async def _alive(env: dict[str, str], max_age: float) -> bool:
    """`timex-licensing worker-alive --max-age MAX_AGE` passes, run as the probe runs it: a process of its own."""
    command = [sys.executable, "-m", "service.cli", "worker-alive", "--max-age", str(max_age)]
    checked = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True)
    return checked.returncode == 0


async def _until_alive(env: dict[str, str], max_age: float, alive: bool, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + WAIT_AT_MOST_SECONDS  # a bound on a broken run, not a measure of this one
    while await _alive(env, max_age) != alive:
        assert time.monotonic() < deadline, log()
        await asyncio.sleep(0.05)


async def test_a_worker_passes_its_liveness_check_while_its_loop_turns_and_fails_it_while_stuck(
    own_database_url: str, tmp_path: Path
) -> None:
    """A pass of the loop that completes (here: nothing due) writes the heartbeat. A pass stuck in a database call
    (the deliveries' table locked by another client) writes none: the worker fails `worker-alive` once its last
    pass is older than `--max-age`, and passes again when it is let go. A heartbeat left by an earlier run counts
    for nothing."""
    heartbeat = tmp_path / "heartbeat"
    env = {
        **os.environ,
        "DATABASE_URL": own_database_url,
        "WEBHOOK_POLL_SECONDS": "0.02",
        "WEBHOOK_WORKER_HEARTBEAT_FILE": str(heartbeat),
    }
    heartbeat.touch()  # an earlier run's
    assert await _alive(env, 300)

    async with contextlib.AsyncExitStack() as first_pass_held:
        held = await first_pass_held.enter_async_context(table_held(own_database_url, "webhook_deliveries"))
        with running_worker(env) as log:
            await held.until_waiting(1)  # its first pass, stuck claiming
            assert not heartbeat.exists(), log()
            assert not await _alive(env, 300)

            await first_pass_held.aclose()
            await _until_alive(env, 300, True, log)

            async with table_held(own_database_url, "webhook_deliveries") as held:
                await held.until_waiting(1)
                stuck_since = heartbeat.stat().st_mtime
                await _until_alive(env, 1, False, log)
                assert heartbeat.stat().st_mtime == stuck_since, "a stuck pass wrote the heartbeat"

            await _until_alive(env, 1, True, log)
