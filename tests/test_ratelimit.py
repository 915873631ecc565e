"""The limiter's counters in Redis, below the HTTP layer: taking and giving back a place are safe to repeat (a call
whose outcome is unknown is sent again), attempts one after another cost one script call each, and an attempt's
decision says what the `RateLimit` headers would (limit, remaining, reset)."""

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from service import errors
from service.ratelimit import Counters, Limiter, RedisStore, _Place, create_counters

pytestmark = pytest.mark.anyio


@pytest.fixture
async def counters() -> AsyncIterator[Counters]:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set")
    counters = create_counters(url, timeout_ms=1000)
    yield counters
    await counters.close()


def _store(counters: Counters) -> RedisStore:
    assert counters.redis is not None
    return counters.redis


async def test_taking_a_place_again_and_giving_it_back_twice_count_once(counters: Counters) -> None:
    name = f"test-{uuid.uuid4().hex}"
    store = _store(counters)

    first = await store.take("attempt-1", {name: 3})
    again = await store.take("attempt-1", {name: 3})  # the same attempt, its call sent again
    other = await store.take("attempt-2", {name: 3})
    for _ in range(2):
        store.finish(_place(store, "attempt-1", name), failed=True, window=60)
    after = await store.take("attempt-3", {name: 3})

    assert (first.retry_after, again.retry_after, other.retry_after) == (0, 0, 0)
    assert (first.remaining, again.remaining, other.remaining) == (2, 2, 1)
    assert after.retry_after == 0 and after.remaining == 0  # one failure, attempt-2 in flight, attempt-3 itself


def _place(store: RedisStore, attempt: str, name: str) -> _Place:
    return _Place(store, attempt, (name,))


async def test_attempts_one_after_another_make_one_script_call_each(counters: Counters) -> None:
    store = _store(counters)
    calls = 0
    script = store._script

    async def counted(**arguments: object) -> object:
        nonlocal calls
        calls += 1
        return await script(**arguments)

    store._script = counted
    limiter = Limiter(counters, limit=1000, window=60, prefix=f"test-{uuid.uuid4().hex}")
    for _ in range(20):
        async with limiter.attempt(limits={"client:192.0.2.1": limiter.limit}, failures=(errors.KeyNotFound,)):
            pass

    assert calls == 20


async def test_an_attempts_decision_says_limit_remaining_and_reset(counters: Counters) -> None:
    limiter = Limiter(counters, limit=3, window=900, prefix=f"test-{uuid.uuid4().hex}")
    limits = {"client:192.0.2.1": 3, "wide": 100}
    for _ in range(2):
        with pytest.raises(errors.KeyNotFound):
            async with limiter.attempt(limits=limits, failures=(errors.KeyNotFound,)):
                raise errors.KeyNotFound()

    with pytest.raises(errors.KeyNotFound):
        async with limiter.attempt(limits=limits, failures=(errors.KeyNotFound,)) as decision:
            raise errors.KeyNotFound()
    with pytest.raises(errors.RateLimited) as refused:
        async with limiter.attempt(limits=limits, failures=(errors.KeyNotFound,)):
            pass

    assert (decision.limit, decision.remaining, decision.retry_after) == (3, 0, 0)
    assert 0 < decision.reset <= 900
    assert 0 < refused.value.retry_after <= 900
