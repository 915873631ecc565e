"""Scaled out as ops run it: PgBouncer (Debian's) in transaction mode in front of PostgreSQL, two `serve`
processes and a `worker` through it (`DATABASE_TRANSACTION_POOLER=true`), Redis shared, the schema migrated
past the pooler (`DATABASE_DIRECT_URL`). Every request answered by either process, none with a 5xx; a key used
once in a race across both; replays and idempotent retries answered alike by either; each webhook delivered
once; every certificate verifying with either process's JWKS."""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from service.auth import TokenSettings, issue_token
from service.clock import Clock
from tests.api import ISSUED_KEYS
from tests.conftest import fresh_database, make_settings
from tests.pgbouncer import needs_pgbouncer, pgbouncer
from tests.receiver import Receiver
from tests.servers import running_server, running_worker
from tests.test_api_certificates import verify

pytestmark = [pytest.mark.anyio, needs_pgbouncer]

RACE = 40


@dataclass
class Deployment:
    """The two instances, as a load balancer would spread requests over them; every answer kept."""

    urls: list[str]
    admin: dict[str, str]
    client: httpx.AsyncClient
    today: date
    answers: list[httpx.Response] = field(default_factory=list)

    async def send(self, instance: int, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, self.urls[instance % 2] + path, **kwargs)
        self.answers.append(response)
        if path == "/v1/keys" and response.status_code == 201:
            ISSUED_KEYS.update(k["key"] for k in response.json()["keys"])
        return response

    async def keys(self, count: int, instance: int = 0) -> list[str]:
        response = await self.send(instance, "POST", "/v1/keys", json={"count": count}, headers=self.admin)
        assert response.status_code == 201, response.text
        return [k["key"] for k in response.json()["keys"]]

    async def installation(self, code: str, instance: int = 0) -> None:
        body = {"code": code, "purchased_on": str(self.today - timedelta(days=10))}
        response = await self.send(instance, "POST", "/v1/installations", json=body, headers=self.admin)
        assert response.status_code == 201, response.text

    async def activate(self, instance: int, code: str, keys: list[str]) -> httpx.Response:
        return await self.send(instance, "POST", "/v1/activations", json={"installation": code, "keys": keys})


def _migrate(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def database() -> Iterator[str]:
    """A database of this test's own, with no schema yet."""
    with fresh_database() as url:
        yield url


async def test_two_instances_and_a_worker_behind_pgbouncer_in_transaction_mode_keep_every_guarantee(
    database: str,
) -> None:
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("TEST_REDIS_URL is not set")
    settings = make_settings(database)
    # Four server connections for two instances of 20 and a worker of 2: transactions take turns on them.
    with pgbouncer(database, pool_size=4) as bouncer:
        env = {
            **os.environ,
            "DATABASE_URL": bouncer.url,
            "DATABASE_TRANSACTION_POOLER": "true",
            "REDIS_URL": redis_url,
            "REDIS_TIMEOUT_MS": "1000",
            "RATE_LIMIT_PREFIX": f"test-{uuid.uuid4().hex}",
            "ACTIVATION_FAILURE_LIMIT": "1000",  # dozens of activations at once from one address
            "WEBHOOK_ALLOWED_HOSTS": json.dumps(["127.0.0.1"]),
            "WEBHOOK_POLL_SECONDS": "0.05",
        }
        # Migrated twice at once: past the pooler, and through it (each in its one transaction, one after the other).
        migrations = [_migrate({**env, "DATABASE_DIRECT_URL": database}), _migrate(env)]
        for migration in migrations:
            output = migration.communicate(timeout=120)[0]
            assert migration.returncode == 0, output

        async with Receiver.running() as receiver:
            with (
                running_server(env) as first,
                running_server(env) as second,
                running_worker(env) as worker_log,
            ):
                async with httpx.AsyncClient(timeout=60) as client:
                    clock = Clock(settings.zone)
                    token = issue_token(TokenSettings.of(settings), "admin", "ops", clock.now(), timedelta(minutes=10))
                    admin = {"Authorization": f"Bearer {token}"}
                    deployment = Deployment([first, second], admin, client, clock.today())
                    await _exercise(deployment, receiver, worker_log)

    statuses = Counter(answer.status_code for answer in deployment.answers)
    assert not [status for status in statuses if status >= 500], statuses


async def _exercise(deployment: Deployment, receiver: Receiver, worker_log: Any) -> None:
    send = deployment.send
    endpoint = await send(
        0,
        "POST",
        "/v1/webhook-endpoints",
        json={"url": receiver.url, "event_types": ["activation.created"]},
        headers=deployment.admin,
    )
    assert endpoint.status_code == 201, endpoint.text

    # The walk-through, each step on the other instance than the one before.
    await deployment.installation("ACME-0001", instance=0)
    keys = await deployment.keys(2, instance=1)
    quote = await send(0, "GET", "/v1/installations/ACME-0001/quote")
    assert quote.status_code == 200, quote.text
    activated = await deployment.activate(1, "ACME-0001", keys)
    assert activated.status_code == 201, activated.text
    replayed = await deployment.activate(0, "ACME-0001", keys)
    assert replayed.status_code == 200 and replayed.json()["activation_id"] == activated.json()["activation_id"]
    support = await send(1, "GET", "/v1/installations/ACME-0001/support")
    assert support.json()["support_end"] == activated.json()["support_end_after"]
    refused = await send(0, "GET", "/v1/installations/NOPE/support", headers={"Accept-Language": "ru"})
    assert refused.status_code == 404 and refused.json()["code"] == "installation_not_found"

    # The race: one key each, sent to both at once; and a burst of reads beside it.
    await deployment.installation("RACE", instance=1)
    race_keys = await deployment.keys(RACE)
    race, reads = await asyncio.gather(
        asyncio.gather(*(deployment.activate(n, "RACE", [key]) for n, key in enumerate(race_keys))),
        asyncio.gather(
            *(
                send(n, "GET", path)
                for n in range(120)
                for path in ("/v1/installations/ACME-0001/support", "/.well-known/jwks.json", "/readyz")
            )
        ),
    )
    assert [r.status_code for r in race] == [201] * RACE, [r.text for r in race if r.status_code != 201]
    assert all(r.status_code == 200 for r in reads)
    assert {r.json()["rate_limits"] for r in reads if r.url.path == "/readyz"} == {"redis"}, "one shared count"
    race_support = await send(0, "GET", "/v1/installations/RACE/support")
    assert race_support.json()["months_granted"] == 12 + RACE * 14

    # Replays of the race's activations, each on the instance that did not make it, all at once.
    replays = await asyncio.gather(*(deployment.activate(n + 1, "RACE", [key]) for n, key in enumerate(race_keys)))
    assert [r.status_code for r in replays] == [200] * RACE
    assert [r.json()["activation_id"] for r in replays] == [r.json()["activation_id"] for r in race]

    # An idempotent retry across instances, then the same key sent to both at once: one batch.
    retried = [
        await send(n, "POST", "/v1/keys", json={"count": 3}, headers={**deployment.admin, "Idempotency-Key": "o-1"})
        for n in range(2)
    ]
    assert [r.status_code for r in retried] == [201, 201] and retried[0].content == retried[1].content
    at_once = await asyncio.gather(
        *(
            send(n, "POST", "/v1/keys", json={"count": 5}, headers={**deployment.admin, "Idempotency-Key": "o-2"})
            for n in range(8)
        )
    )
    assert len({r.content for r in at_once if r.status_code == 201}) == 1
    assert {r.json()["code"] for r in at_once if r.status_code != 201} <= {"idempotency_key_in_flight"}

    # Every certificate verifies with either instance's key set.
    certificates = [activated.json()["certificate"], *(r.json()["certificate"] for r in race + replays)]
    for instance in range(2):
        jwks = (await send(instance, "GET", "/.well-known/jwks.json")).json()
        assert {verify(jwks, certificate)["sub"] for certificate in certificates} == {"ACME-0001", "RACE"}

    # Each activation's event delivered once, by the worker through the pooler.
    activations = {activated.json()["activation_id"], *(r.json()["activation_id"] for r in race)}
    deadline = time.monotonic() + 60  # a bound on a broken run, not a measure of this one
    while len(receiver.received) < len(activations) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)  # time enough for a second delivery of any of them, if there were one
    secret = endpoint.json()["secret"]
    delivered = [received.verified(secret)["data"]["activation_id"] for received in receiver.received]
    assert sorted(delivered) == sorted(activations), worker_log()
    assert set(receiver.counts().values()) == {1}
