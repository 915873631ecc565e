"""Counting failed activations, so that guessing keys is hopeless.

Failures are counted per client address and per installation in a fixed window; once either
count reaches the limit, activations from that address or on that installation are refused with
`RateLimited` until the window ends. Successful activations are never counted. The counters live
in Redis when it is configured, so that every service process shares them, and in this process's
memory otherwise (the embedded single-process case).
"""

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service import errors

log = logging.getLogger(__name__)

COUNTED_FAILURES = (
    errors.KeyNotFound,
    errors.KeyMalformed,
    errors.KeyAlreadyUsed,
    errors.KeyRevoked,
    errors.KeyDuplicated,
)


class Counters(Protocol):
    async def highest(self, names: list[str]) -> tuple[int, int]:
        """The highest count among `names` and the seconds left in that counter's window."""

    async def increment(self, names: list[str], window: int) -> None: ...

    async def close(self) -> None: ...


class MemoryCounters:
    MAX_ENTRIES = 100_000

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._counts: dict[str, tuple[int, float]] = {}

    async def highest(self, names: list[str]) -> tuple[int, int]:
        now = self._clock()
        live = [entry for name in names if (entry := self._counts.get(name)) and entry[1] > now]
        if not live:
            return 0, 0
        count, expires = max(live)
        return count, max(1, round(expires - now))

    async def increment(self, names: list[str], window: int) -> None:
        now = self._clock()
        if len(self._counts) > self.MAX_ENTRIES:
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        for name in names:
            count, expires = self._counts.get(name, (0, 0.0))
            self._counts[name] = (count + 1, expires) if expires > now else (1, now + window)

    async def close(self) -> None:
        self._counts.clear()


class RedisCounters:
    def __init__(self, redis: Redis):
        self._redis = redis

    async def highest(self, names: list[str]) -> tuple[int, int]:
        counts = [int(c or 0) for c in await self._redis.mget(names)]
        count, name = max(zip(counts, names, strict=True))
        return (count, max(1, await self._redis.ttl(name))) if count else (0, 0)

    async def increment(self, names: list[str], window: int) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.incr(name)
                pipe.expire(name, window, nx=True)
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()


class FailureLimiter:
    def __init__(self, counters: Counters, limit: int, window_seconds: int, prefix: str = "timex:failures"):
        self.counters = counters
        self.limit = limit
        self.window = window_seconds
        self.prefix = prefix

    @asynccontextmanager
    async def guard(self, client: str, installation: str) -> AsyncIterator[None]:
        """Refuse a blocked caller before any work; count the failures of the guarded block."""
        names = [f"{self.prefix}:client:{client}", f"{self.prefix}:installation:{installation}"]
        try:
            count, retry_after = await self.counters.highest(names)
        except RedisError:
            log.warning("rate-limit counters unreachable; activation allowed")
            count = 0
        if count >= self.limit:
            raise errors.RateLimited(retry_after)
        try:
            yield
        except COUNTED_FAILURES:
            try:
                await self.counters.increment(names, self.window)
            except RedisError:
                log.warning("rate-limit counters unreachable; failure not counted")
            raise


def create_limiter(redis_url: str | None, limit: int, window_seconds: int, prefix: str) -> FailureLimiter:
    counters = RedisCounters(Redis.from_url(redis_url)) if redis_url else MemoryCounters()
    return FailureLimiter(counters, limit, window_seconds, prefix)
