"""Rate limits that a stranger cannot turn against a customer, and that hold under any concurrency.

A limit is kept per name (a client's address, a client id): the failures counted in a fixed window,
and the attempts in flight. An attempt takes its place first, in one atomic step, and is refused
with `RateLimited` while failures and attempts in flight together would pass the limit; then it
works; then it gives its place back, adding a failure when it failed in a way that counts. So at
most `limit` failures get through per window, however many attempts run at once, and an attempt
that succeeds is never counted.

The counters live in Redis when it is configured, so that every service process shares them, and
in this process's memory otherwise (the embedded single-process case) and while Redis is away:
each Redis call has a short time limit, and a Redis that failed is tried again only after a pause.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Protocol

from prometheus_client import Gauge
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from service import errors

log = logging.getLogger(__name__)

STORE = Gauge(
    "rate_limit_store",
    "Where this process keeps its rate-limit counters now: 1 for the store in use",
    ["store"],
    multiprocess_mode="liveall",
)

IN_FLIGHT_SECONDS = 60
"""How long an attempt's place outlives a process that died holding it (Redis only)."""

REFUSED_IN_FLIGHT_RETRY_AFTER = 1
"""`Retry-After` when only the attempts in flight fill the limit: one of them ends soon."""


@dataclass(frozen=True)
class Quota:
    """Where an attempt left its names' limit, for the `RateLimit` headers: `remaining` more attempts may fail
    before it is reached, `reset` seconds before the window's failures are forgotten."""

    policy: str
    limit: int
    window: int
    remaining: int
    reset: int


QUOTA: ContextVar[Quota | None] = ContextVar("quota", default=None)
"""The last limit checked in this context (one request): what the HTTP layer reports in its answer's headers."""


@dataclass(frozen=True)
class Taken:
    wait: int
    """0 when admitted (its places taken), else the seconds to wait (nothing taken)."""
    remaining: int
    """The fewest places left under any of the names, after this one."""
    reset: int
    """Seconds until the names' failures are forgotten; 0 when none are counted."""


def client_name(address: str) -> str:
    """The name a client is limited under: its IPv4 address, or its IPv6 network (/64: what one subscriber gets)."""
    try:
        parsed = ip_address(address)
    except ValueError:
        return f"client:{address}"
    if isinstance(parsed, IPv6Address):
        return f"client:{ip_network(f'{parsed}/64', strict=False)}"
    return f"client:{address}"


class Store(Protocol):
    name: str

    async def take(self, names: Sequence[str], limit: int) -> Taken:
        """Take a place in flight under each name, if each has room."""

    async def finish(self, names: Sequence[str], failed: bool, window: int) -> None:
        """Give the places back, counting a failure under each name when `failed`."""

    async def close(self) -> None: ...


class MemoryStore:
    name = "memory"
    MAX_FAILURE_ENTRIES = 100_000

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # name: (count, when its window ends)
        self._in_flight: dict[str, int] = {}

    def _failures_of(self, name: str, now: float) -> tuple[int, float]:
        count, ends = self._failures.get(name, (0, 0.0))
        return (count, ends) if ends > now else (0, 0.0)

    async def take(self, names: Sequence[str], limit: int) -> Taken:
        # No await between the check and the update: the event loop makes the two one step.
        now = self._clock()
        wait, remaining, reset = 0, limit, 0
        for name in names:
            failures, ends = self._failures_of(name, now)
            left = limit - failures - self._in_flight.get(name, 0) - 1
            remaining = min(remaining, left)
            reset = max(reset, max(1, round(ends - now)) if failures else 0)
            if left < 0:
                wait = max(wait, max(1, round(ends - now)) if failures >= limit else REFUSED_IN_FLIGHT_RETRY_AFTER)
        if wait:
            return Taken(wait, 0, reset)
        for name in names:
            self._in_flight[name] = self._in_flight.get(name, 0) + 1
        return Taken(0, remaining, reset)

    async def finish(self, names: Sequence[str], failed: bool, window: int) -> None:
        now = self._clock()
        for name in names:
            left = self._in_flight.pop(name, 1) - 1
            if left > 0:
                self._in_flight[name] = left
            if failed:
                count, ends = self._failures_of(name, now)
                self._failures[name] = (count + 1, ends or now + window)
        if len(self._failures) > self.MAX_FAILURE_ENTRIES:
            self._failures = {name: entry for name, entry in self._failures.items() if entry[1] > now}

    async def close(self) -> None:
        self._failures.clear()
        self._in_flight.clear()


# KEYS: each name's failure counter and its in-flight counter, in pairs. One script runs as one
# step in Redis, so no two attempts can both see room for one.
_TAKE = """
local limit, wait, remaining, reset = tonumber(ARGV[1]), 0, tonumber(ARGV[1]), 0
for i = 1, #KEYS, 2 do
  local failures = tonumber(redis.call('GET', KEYS[i]) or '0')
  local in_flight = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  remaining = math.min(remaining, limit - failures - in_flight - 1)
  if failures > 0 then reset = math.max(reset, redis.call('TTL', KEYS[i]), 1) end
  if failures + in_flight + 1 > limit then
    if failures >= limit then wait = math.max(wait, redis.call('TTL', KEYS[i]), 1) else wait = math.max(wait, 1) end
  end
end
if wait > 0 then return {wait, 0, reset} end
for i = 2, #KEYS, 2 do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return {0, remaining, reset}
"""
_FINISH = """
for i = 1, #KEYS, 2 do
  if redis.call('DECR', KEYS[i + 1]) <= 0 then redis.call('DEL', KEYS[i + 1]) end
  if ARGV[1] == '1' then
    redis.call('INCR', KEYS[i])
    redis.call('EXPIRE', KEYS[i], ARGV[2], 'NX')
  end
end
return 0
"""


def _pairs(names: Sequence[str]) -> list[str]:
    return [key for name in names for key in (f"{name}:failures", f"{name}:in-flight")]


class RedisStore:
    name = "redis"

    def __init__(self, redis: Redis):
        self.redis = redis
        self._take = redis.register_script(_TAKE)
        self._finish = redis.register_script(_FINISH)

    async def take(self, names: Sequence[str], limit: int) -> Taken:
        wait, remaining, reset = await self._take(keys=_pairs(names), args=[limit, IN_FLIGHT_SECONDS])
        return Taken(int(wait), int(remaining), int(reset))

    async def finish(self, names: Sequence[str], failed: bool, window: int) -> None:
        await self._finish(keys=_pairs(names), args=[1 if failed else 0, window])

    async def close(self) -> None:
        await self.redis.aclose()


_REDIS_DOWN = (RedisError, OSError, TimeoutError)


class Counters:
    """Redis while it answers within `timeout`; this process's memory while it does not, trying Redis
    again `retry_seconds` after it last failed."""

    def __init__(self, redis: RedisStore | None, timeout: float = 0.05, retry_seconds: float = 5.0):
        self.redis = redis
        self.memory = MemoryStore()
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._redis_again_at = 0.0
        self._set_store(redis or self.memory)

    @property
    def store(self) -> str:
        """The store in use: `redis`, or `memory` (no Redis configured, or Redis away)."""
        return self._store

    @property
    def redis_away(self) -> bool:
        return self.redis is not None and self._store != self.redis.name

    def _set_store(self, store: Store) -> None:
        self._store = store.name
        for name in ("redis", "memory"):
            STORE.labels(name).set(1 if name == store.name else 0)

    def _redis_failed(self, exc: BaseException) -> None:
        self._redis_again_at = time.monotonic() + self.retry_seconds
        if self._store != self.memory.name:
            log.warning("rate-limit counters: Redis unreachable (%s); counting in process memory", type(exc).__name__)
            self._set_store(self.memory)

    async def take(self, names: Sequence[str], limit: int) -> tuple[Taken, Store]:
        """`Store.take`, in the store in use; the store, to finish in."""
        if self.redis is not None and time.monotonic() >= self._redis_again_at:
            try:
                async with asyncio.timeout(self.timeout):
                    taken = await self.redis.take(names, limit)
            except _REDIS_DOWN as exc:
                self._redis_failed(exc)
            else:
                if self._store != self.redis.name:
                    log.warning("rate-limit counters: Redis is back; counting there again")
                    self._set_store(self.redis)
                return taken, self.redis
        return await self.memory.take(names, limit), self.memory

    async def finish(self, store: Store, names: Sequence[str], failed: bool, window: int) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await store.finish(names, failed, window)
        except _REDIS_DOWN as exc:
            self._redis_failed(exc)  # its place expires in Redis by itself; a failure goes uncounted

    async def check(self) -> str:
        """Ask Redis now (for `/readyz`), and say which store is in use."""
        if self.redis is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await self.redis.redis.ping()
            except _REDIS_DOWN as exc:
                self._redis_failed(exc)
            else:
                self._redis_again_at = 0.0
        return self.store

    async def close(self) -> None:
        await self.memory.close()
        if self.redis is not None:
            await self.redis.close()


class Limiter:
    """At most `limit` failures per name in a `window` of seconds (see the module's docstring)."""

    def __init__(self, counters: Counters, *, limit: int, window: int, prefix: str):
        self.counters = counters
        self.limit = limit
        self.window = window
        self.prefix = prefix
        self.policy = prefix.rsplit(":", 1)[-1]
        """The limit's name in the `RateLimit` headers: the prefix's last part (`activation`, `token`)."""

    @asynccontextmanager
    async def attempt(self, *, names: Sequence[str], failures: tuple[type[BaseException], ...]) -> AsyncIterator[None]:
        """Refuse before any work while `names` are at the limit; count the block's `failures`."""
        keys = [f"{self.prefix}:{name}" for name in names]
        taken, store = await self.counters.take(keys, self.limit)
        QUOTA.set(Quota(self.policy, self.limit, self.window, max(taken.remaining, 0), taken.reset or self.window))
        if taken.wait:
            raise errors.RateLimited(taken.wait)
        failed = False
        try:
            yield
        except failures:
            failed = True
            raise
        finally:
            await self.counters.finish(store, keys, failed, self.window)


def create_counters(redis_url: str | None, *, timeout_ms: int) -> Counters:
    if not redis_url:
        return Counters(None)
    timeout = timeout_ms / 1000
    redis = Redis.from_url(
        redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    return Counters(RedisStore(redis), timeout=timeout)
