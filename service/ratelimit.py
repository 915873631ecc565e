"""Rate limits that a stranger cannot turn against a customer, and that hold under any concurrency.

A limit is kept per name (a client's address, a client id): the failures counted in a fixed window,
and the attempts in flight. An attempt takes its place under each of its names first, in one atomic
step, and is refused with `RateLimited` while failures and attempts in flight together would pass a
name's limit; then it works; then it gives its places back, adding a failure when it failed in a way
that counts. So at most a name's limit of failures get through per window, however many attempts run
at once, and an attempt that succeeds is never counted.

The counters live in Redis when it is configured, so that every service process shares them, and in
this process's memory otherwise (the embedded single-process case) and while Redis is away.

In Redis, each process sends one script at a time: every attempt that arrived while the previous one
was on its way, and every place given back since, go together in the next. So an attempt waits for
one round trip, under load shared with others, and its place is given back by a later call, off its
request's path. A place is an attempt's own id in a sorted set, expiring by itself: giving it back
twice, or after a call whose outcome is unknown, changes nothing, and a process that dies holding
places leaves them for `IN_FLIGHT_SECONDS` only.

A call that Redis did not answer within `REDIS_TIMEOUT_MS` is sent again at once with a longer time
limit (`patience`): a process whose event loop lags under a burst must not take that for Redis being
away, since counting in memory would let attempts past the limit Redis keeps for the others. Taking a
place is as safe to repeat as giving it back (an attempt whose id already holds a place is admitted
without counting again). Only when Redis does not answer that either (or refuses connections) does the
process count in its memory, until it tries Redis again `retry_seconds` later, then with the short time
limit alone; with N processes a client then gets up to N times the limit.
"""

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_network

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

GIVE_BACK_SECONDS = 0.05
"""The longest a place given back waits for another attempt's call to Redis before it is sent on its own."""

REDIS_MIN_VERSION = (6, 2)
"""The oldest Redis the counters run on: the script reads `TIME` before it writes (effects replication, the
default from 5.0); older than 6.2 is out of support. A Redis below it is a logged error and the memory store."""


def client_name(address: str) -> str:
    """The name a client is limited under: its IPv4 address, or its IPv6 network (/64: what one subscriber gets)."""
    if ":" not in address:  # no IPv6 address: named as it is, whether IPv4 or not an address (not parsed again)
        return f"client:{address}"
    try:
        parsed = IPv6Address(address)
    except ValueError:
        return f"client:{address}"
    return f"client:{ip_network(f'{parsed}/64', strict=False)}"


@dataclass(frozen=True)
class Count:
    """One name's counters as an attempt found them."""

    failures: int
    in_flight: int
    reset: int
    """Seconds until the window's failures are forgotten (0: none counted)."""


@dataclass(frozen=True)
class Decision:
    """What the limits say of one attempt, in the terms of the `RateLimit` headers (RFC 9331 draft): the
    tightest of its names' limits, what is left of it once this attempt is counted, and when it resets."""

    limit: int
    remaining: int
    reset: int
    retry_after: int
    """0: admitted. Otherwise refused, and the seconds to wait."""

    @classmethod
    def of(cls, limits: Mapping[str, int], counts: Mapping[str, Count], admitted: bool) -> "Decision":
        retry_after, tightest = 0, None
        for name, limit in limits.items():
            count = counts[name]
            left = limit - count.failures - count.in_flight - (1 if admitted else 0)
            if tightest is None or left < tightest[1]:
                tightest = (limit, left, count.reset)
            if not admitted and left < 1:
                wait = max(count.reset, 1) if count.failures >= limit else REFUSED_IN_FLIGHT_RETRY_AFTER
                retry_after = max(retry_after, wait)
        assert tightest is not None, "an attempt has at least one name"
        return cls(tightest[0], max(tightest[1], 0), tightest[2], retry_after)


@dataclass(frozen=True)
class Quota:
    """A limit checked by a request, for its answer's `RateLimit` headers: the limiter's name and window, and what
    it decided of the attempt."""

    policy: str
    window: int
    decision: Decision


QUOTA: ContextVar[Quota | None] = ContextVar("quota", default=None)
"""The last limit checked in this context (one request): what the HTTP layer reports in its answer's headers."""


@dataclass(frozen=True)
class _Place:
    """An admitted attempt's places, to give back."""

    store: "MemoryStore | RedisStore"
    id: str
    names: tuple[str, ...]


class MemoryStore:
    name = "memory"
    MAX_FAILURE_ENTRIES = 100_000

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # name: (count, when its window ends)
        self._in_flight: dict[str, int] = {}

    def _count(self, name: str, now: float) -> Count:
        failures, ends = self._failures.get(name, (0, 0.0))
        if ends <= now:
            failures, ends = 0, now
        return Count(failures, self._in_flight.get(name, 0), round(ends - now))

    def take(self, attempt: str, limits: Mapping[str, int]) -> Decision:
        # Nothing awaits between the check and the update: the event loop makes the two one step.
        now = self._clock()
        counts = {name: self._count(name, now) for name in limits}
        admitted = all(count.failures + count.in_flight < limits[name] for name, count in counts.items())
        if admitted:
            for name in limits:
                self._in_flight[name] = self._in_flight.get(name, 0) + 1
        return Decision.of(limits, counts, admitted)

    def finish(self, place: _Place, failed: bool, window: int) -> None:
        now = self._clock()
        for name in place.names:
            left = self._in_flight.pop(name, 1) - 1
            if left > 0:
                self._in_flight[name] = left
            if failed:
                count, ends = self._failures.get(name, (0, 0.0))
                self._failures[name] = (count + 1, ends) if ends > now else (1, now + window)
        if len(self._failures) > self.MAX_FAILURE_ENTRIES:
            self._failures = {name: entry for name, entry in self._failures.items() if entry[1] > now}

    def close(self) -> None:
        self._failures.clear()
        self._in_flight.clear()


# One call: first the places given back (ARGV: the attempt's id, 1 if it failed, the window, how many names,
# the names), then the attempts (its id, how many names, then each name and its limit). Each name's keys are
# `NAME:failures` (a counter expiring with its window) and `NAME:in-flight` (attempt ids scored by when their
# place expires). One script runs as one step in Redis, so no two attempts can both see room for one; giving a
# place back removes its id, so a second time finds none and counts nothing.
_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local hold = tonumber(ARGV[1])
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  local id, failed, window, n = ARGV[i], ARGV[i + 1] == '1', ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  for j = i, i + n - 1 do
    if redis.call('ZREM', ARGV[j] .. ':in-flight', id) == 1 and failed then
      if redis.call('INCR', ARGV[j] .. ':failures') == 1 then redis.call('EXPIRE', ARGV[j] .. ':failures', window) end
    end
  end
  i = i + n
end
local replies = {}
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local admitted, counts = 1, {}
  local held = redis.call('ZSCORE', ARGV[i] .. ':in-flight', id)
  local again = held ~= false and tonumber(held) > now
  for j = i, i + 2 * n - 1, 2 do
    local name, limit = ARGV[j], tonumber(ARGV[j + 1])
    redis.call('ZREMRANGEBYSCORE', name .. ':in-flight', '-inf', now)
    local failures = tonumber(redis.call('GET', name .. ':failures') or '0')
    local in_flight = redis.call('ZCARD', name .. ':in-flight')
    local reset = 0
    if failures > 0 then reset = math.max(redis.call('TTL', name .. ':failures'), 0) end
    if again then in_flight = in_flight - 1 end
    if failures + in_flight >= limit then admitted = 0 end
    table.insert(counts, failures)
    table.insert(counts, in_flight)
    table.insert(counts, reset)
  end
  if again then admitted = 1 end
  if admitted == 1 then
    for j = i, i + 2 * n - 1, 2 do
      redis.call('ZADD', ARGV[j] .. ':in-flight', now + hold, id)
      redis.call('PEXPIRE', ARGV[j] .. ':in-flight', hold)
    end
  end
  i = i + 2 * n
  table.insert(replies, admitted)
  for _, value in ipairs(counts) do table.insert(replies, value) end
end
return replies
"""


class RedisTooOld(RedisError):
    def __init__(self, version: str):
        super().__init__(f"Redis {version} is older than {'.'.join(map(str, REDIS_MIN_VERSION))}")
        self.version = version


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


@dataclass
class _Taking:
    id: str
    limits: Mapping[str, int]
    answer: "asyncio.Future[Decision]"


@dataclass
class _Giving:
    id: str
    names: tuple[str, ...]
    failed: bool
    window: int
    since: float


class RedisStore:
    """The counters in Redis, one script call at a time (see the module's docstring)."""

    name = "redis"

    def __init__(self, redis: Redis, *, timeout: float, patience: float):
        self.redis = redis
        self.timeout = timeout
        self.patience = patience
        self.trusted = True
        """Redis answered last time: a call it does not answer in `timeout` is sent again, given `patience`."""
        self.version: str | None = None
        self._script = redis.register_script(_SCRIPT)
        self._taking: list[_Taking] = []
        self._giving: list[_Giving] = []
        self._sender: asyncio.Task[None] | None = None
        self._flush: asyncio.TimerHandle | None = None

    async def take(self, attempt: str, limits: Mapping[str, int]) -> Decision:
        answer: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._taking.append(_Taking(attempt, limits, answer))
        self._send_soon()
        return await answer

    def finish(self, place: _Place, failed: bool, window: int) -> None:
        self._giving.append(_Giving(place.id, place.names, failed, window, time.monotonic()))
        if self._flush is None:
            # Given back with the next attempt's call, or on its own after a moment without one: one call per
            # attempt, not two, whenever attempts follow each other. The place is held meanwhile, which only
            # errs on the side of the limit.
            self._flush = asyncio.get_running_loop().call_later(GIVE_BACK_SECONDS, self._send_soon)

    def _send_soon(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while self._taking or self._giving:
            taking, self._taking = self._taking, []
            giving, self._giving = self._giving, []
            args = _arguments(taking, giving)
            try:
                try:
                    replies = await self._call(args, self.timeout)
                except TimeoutError:
                    if not self.trusted:
                        raise
                    replies = await self._call(args, self.patience)
                self._answer(taking, replies)
            except (RedisError, OSError, TimeoutError) as exc:
                # Whether Redis ran the call is unknown: give back again later (twice changes nothing) both
                # what this call gave back and the places its attempts may have taken.
                expired = time.monotonic() - IN_FLIGHT_SECONDS
                again = giving + [_Giving(t.id, tuple(t.limits), False, 0, time.monotonic()) for t in taking]
                self._giving[:0] = [g for g in again if g.since > expired]
                _fail(taking, exc)
                return
            except BaseException as exc:  # a bug, or the loop closing: no attempt waits for an answer forever
                _fail(taking, exc)
                raise

    def _answer(self, taking: list[_Taking], replies: list[int]) -> None:
        position = 0
        for one in taking:
            admitted = replies[position] == 1
            counts = {}
            for n, name in enumerate(one.limits):
                failures, in_flight, reset = replies[position + 1 + 3 * n : position + 4 + 3 * n]
                counts[name] = Count(failures, in_flight, reset)
            position += 1 + 3 * len(one.limits)
            if not one.answer.done():
                one.answer.set_result(Decision.of(one.limits, counts, admitted))
            elif admitted:  # its request was cancelled meanwhile
                self._giving.append(_Giving(one.id, tuple(one.limits), False, 0, time.monotonic()))

    async def _call(self, args: list[str | int], timeout: float) -> list[int]:
        async with asyncio.timeout(timeout):
            await self._check_version()
            return await self._script(keys=[], args=args)

    async def ask(self) -> None:
        """Is Redis there, and new enough (asked the first time)?"""
        async with asyncio.timeout(self.patience if self.version is None else self.timeout):
            if self.version is None:
                await self._check_version()
            else:
                await self.redis.ping()

    async def _check_version(self) -> None:
        if self.version is None:
            version = str((await self.redis.info("server"))["redis_version"])
            if _version(version) < REDIS_MIN_VERSION:
                raise RedisTooOld(version)
            self.version = version

    async def close(self) -> None:
        """Give back what is still held (at most one time limit), then close."""
        if self._taking or self._giving:
            self._send_soon()
        if self._sender is not None:
            await asyncio.wait([self._sender], timeout=self.timeout * 2)
        await self.redis.aclose()


def _fail(taking: list[_Taking], exc: BaseException) -> None:
    for one in taking:
        if not one.answer.done():
            one.answer.set_exception(exc)


def _arguments(taking: list[_Taking], giving: list[_Giving]) -> list[str | int]:
    args: list[str | int] = [IN_FLIGHT_SECONDS * 1000, len(giving)]
    for one in giving:
        args += [one.id, 1 if one.failed else 0, one.window, len(one.names), *one.names]
    for attempt in taking:
        args += [attempt.id, len(attempt.limits)]
        for name, limit in attempt.limits.items():
            args += [name, limit]
    return args


class Counters:
    """Redis while it answers; this process's memory while it is away, trying Redis again `retry_seconds` after
    it last failed (see the module's docstring)."""

    def __init__(self, redis: RedisStore | None, retry_seconds: float = 5.0):
        self.redis = redis
        self.memory = MemoryStore()
        self.retry_seconds = retry_seconds
        self.too_old: str | None = None
        """The version of a Redis too old to count in: then this process counts in memory for good."""
        self._redis_again_at = 0.0
        self._ids = itertools.count()
        self._process = secrets.token_hex(6)
        self._set_store(redis or self.memory)

    @property
    def store(self) -> str:
        """The store in use: `redis`, or `memory` (no Redis configured, or Redis away or too old)."""
        return self._store

    @property
    def redis_away(self) -> bool:
        return self.redis is not None and self._store != self.redis.name

    def _set_store(self, store: MemoryStore | RedisStore) -> None:
        self._store = store.name
        for name in ("redis", "memory"):
            STORE.labels(name).set(1 if name == store.name else 0)

    def _redis_failed(self, exc: BaseException) -> None:
        if isinstance(exc, RedisTooOld) and self.too_old is None:
            log.error(
                "rate-limit counters: %s; counting in process memory (each process on its own) until Redis is "
                "upgraded and the service restarted",
                exc,
            )
            self.too_old = exc.version
        self._redis_again_at = time.monotonic() + self.retry_seconds
        if self.redis is not None:
            self.redis.trusted = False
        if self._store != self.memory.name:
            log.warning("rate-limit counters: Redis unreachable (%s); counting in process memory", type(exc).__name__)
            self._set_store(self.memory)

    async def take(self, limits: Mapping[str, int]) -> tuple[Decision, _Place]:
        """Take a place under each name (admitted), or find the limits full (refused: nothing taken)."""
        attempt = f"{self._process}:{next(self._ids)}"
        if self.redis is not None and self.too_old is None and time.monotonic() >= self._redis_again_at:
            try:
                decision = await self.redis.take(attempt, limits)
            except (RedisError, OSError, TimeoutError) as exc:
                self._redis_failed(exc)
            else:
                self.redis.trusted = True
                if self._store != self.redis.name:
                    log.warning("rate-limit counters: Redis is back; counting there again")
                    self._set_store(self.redis)
                return decision, _Place(self.redis, attempt, tuple(limits))
        return self.memory.take(attempt, limits), _Place(self.memory, attempt, tuple(limits))

    def finish(self, place: _Place, failed: bool, window: int) -> None:
        """Give the places back, counting a failure under each name when `failed` (Redis: with a later call)."""
        place.store.finish(place, failed, window)

    async def check(self) -> str:
        """Ask Redis now (at start-up, for `/readyz`), and say which store is in use."""
        if self.redis is not None and self.too_old is None:
            try:
                await self.redis.ask()
            except TimeoutError:
                pass  # slow to answer a probe is not away under load: the attempts judge that, with patience
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
            else:
                self._redis_again_at = 0.0
        return self.store

    async def close(self) -> None:
        self.memory.close()
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
    async def attempt(
        self, *, limits: Mapping[str, int], failures: tuple[type[BaseException], ...]
    ) -> AsyncIterator[Decision]:
        """Refuse before any work while a name is at its limit; count the block's `failures` under each name.
        The block gets the decision (what `RateLimit` headers say)."""
        decision, place = await self.counters.take({f"{self.prefix}:{name}": limit for name, limit in limits.items()})
        QUOTA.set(Quota(self.policy, self.window, decision))
        if decision.retry_after:
            raise errors.RateLimited(decision.retry_after)
        failed = False
        try:
            yield decision
        except failures:
            failed = True
            raise
        finally:
            self.counters.finish(place, failed, self.window)


def create_counters(redis_url: str | None, *, timeout_ms: int) -> Counters:
    if not redis_url:
        return Counters(None)
    timeout = timeout_ms / 1000
    # No socket time limits: every call has its own (`asyncio.timeout`). RESP2: a Redis too old for RESP3's HELLO
    # still connects, and is told apart by its version rather than by a failed handshake.
    redis = Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0), protocol=2)
    return Counters(RedisStore(redis, timeout=timeout, patience=max(1.0, 10 * timeout)))
