"""Guessing keys is hopeless: failed activations are counted per client address and per
installation, in Redis when configured (shared by every process) and in memory otherwise."""

import os
import uuid
from collections.abc import AsyncIterator
from datetime import date

import pytest

from service import keyformat
from service.db import create_engine
from tests.api import Api
from tests.conftest import empty_tables, make_settings

pytestmark = pytest.mark.anyio

LIMIT = 3
PROXY = "10.0.0.5"


@pytest.fixture(params=["memory", "redis"])
async def limited(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Api]:
    """An API that blocks after three failures, behind a trusted proxy at 10.0.0.5."""
    redis_url = None
    if request.param == "redis":
        redis_url = os.environ.get("TEST_REDIS_URL")
        if not redis_url:
            pytest.skip("TEST_REDIS_URL is not set")
    settings = make_settings(sqlite_url, redis_url=redis_url, activation_failure_limit=LIMIT,
                             rate_limit_prefix=f"test-{uuid.uuid4().hex}", trusted_proxies=["10.0.0.0/24"])
    engine = create_engine(settings.database_url)
    async with Api.started(settings, engine, today=date(2026, 11, 24), client_address=PROXY) as api:
        yield api
        await empty_tables(engine)
    await engine.dispose()


def _from(address: str) -> dict:
    return {"headers": {"X-Forwarded-For": f"{address}, {PROXY}"}}


async def _fail(api: Api, code: str, times: int, **kwargs) -> None:
    for _ in range(times):
        response = await api.activate(code, [keyformat.generate()], **kwargs)
        assert response.status_code == 404


async def test_a_client_that_keeps_failing_is_refused_with_retry_after(limited: Api) -> None:
    await limited.installation("ACME")
    [good] = await limited.keys(1)
    await _fail(limited, "ACME", LIMIT, **_from("203.0.113.7"))

    response = await limited.activate("OTHER", [good], **_from("203.0.113.7"))

    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert 0 < int(response.headers["retry-after"]) <= limited.settings.activation_failure_window_seconds
    assert list((await limited.key_statuses()).values()) == ["issued"]


async def test_an_installation_under_attack_from_many_addresses_is_protected(limited: Api) -> None:
    await limited.installation("ACME")
    for n in range(LIMIT):
        await _fail(limited, "ACME", 1, **_from(f"198.51.100.{n}"))

    response = await limited.activate("ACME", [keyformat.generate()], **_from("198.51.100.99"))

    assert response.status_code == 429


async def test_other_clients_and_successful_activations_are_not_slowed(limited: Api) -> None:
    await limited.installation("ACME")
    await limited.installation("MINE")
    await _fail(limited, "ACME", LIMIT, **_from("203.0.113.7"))
    keys = await limited.keys(LIMIT + 2)

    outcomes = [(await limited.activate("MINE", [key], **_from("192.0.2.1"))).status_code for key in keys]

    assert outcomes == [201] * len(keys)


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, activation_failure_limit=LIMIT)  # no trusted proxies
    engine = create_engine(settings.database_url)
    async with Api.started(settings, engine, today=date(2026, 11, 24), client_address="192.0.2.50") as api:
        for n in range(LIMIT + 1):
            await api.installation(f"I{n}")
        for n in range(LIMIT):  # a liar claiming a new address each time is still one client
            await _fail(api, f"I{n}", 1, **_from(f"203.0.113.{n}"))

        response = await api.activate(f"I{LIMIT}", [keyformat.generate()], **_from("203.0.113.200"))
        await empty_tables(engine)
    await engine.dispose()

    assert response.status_code == 429
