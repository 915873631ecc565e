"""Guessing keys or secrets is hopeless, and no stranger can lock a customer out: failed activations
and failed logins are limited per client address (IPv6: per /64 network), counted before any work,
in Redis when configured (shared by every process) and in memory otherwise or while Redis is away."""

import asyncio
import ipaddress
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import keyformat
from service.db import create_engine
from service.http import deps
from service.ratelimit import client_name
from tests.api import Api
from tests.conftest import empty_tables, make_settings
from tests.servers import running_server

pytestmark = pytest.mark.anyio

LIMIT = 3
PROXY = "10.0.0.5"


def _redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set")
    return url


@asynccontextmanager
async def _limited_api(database_url: str, client_address: str = PROXY, **overrides: object) -> AsyncIterator[Api]:
    """An API that blocks after three failures, behind a trusted proxy at 10.0.0.5."""
    settings = make_settings(
        database_url,
        **{
            "activation_failure_limit": LIMIT,
            "token_failure_limit": LIMIT,
            "trusted_proxies": ["10.0.0.0/24"],
            "rate_limit_prefix": f"test-{uuid.uuid4().hex}",
            **overrides,
        },
    )
    engine = create_engine(settings.database_url)
    try:
        async with Api.started(settings, engine, today=date(2026, 11, 24), client_address=client_address) as api:
            yield api
    finally:
        await empty_tables(engine)
        await engine.dispose()


@pytest.fixture(params=["memory", "redis"])
async def limited(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Api]:
    redis_url = _redis_url() if request.param == "redis" else None
    async with _limited_api(database_url, redis_url=redis_url) as api:
        yield api


def _from(address: str) -> dict:
    return {"headers": {"X-Forwarded-For": f"{address}, {PROXY}"}}


async def _fail(api: Api, code: str, times: int, **kwargs) -> None:
    """Activations with well-formed keys that do not exist: each costs a database lookup, and counts."""
    for _ in range(times):
        response = await api.activate(code, [keyformat.generate()], **kwargs)
        assert (response.status_code, response.json()["code"]) == (404, "key_not_found")


# --- activations


async def test_a_client_that_keeps_failing_is_refused_with_retry_after(limited: Api) -> None:
    await limited.installation("ACME")
    [good] = await limited.keys(1)
    await _fail(limited, "ACME", LIMIT, **_from("203.0.113.7"))

    response = await limited.activate("ACME", [good], **_from("203.0.113.7"))

    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert 0 < int(response.headers["retry-after"]) <= limited.settings.activation_failure_window_seconds
    assert list((await limited.key_statuses()).values()) == ["issued"]


async def test_strangers_failing_on_an_installation_never_block_its_customer(limited: Api) -> None:
    """Junk and guessed keys naming CUST-0042, from other addresses, even before it exists."""
    for n in range(LIMIT * 3):
        await limited.activate("CUST-0042", ["x"], **_from(f"198.51.100.{n}"))
        await limited.activate("CUST-0042", [keyformat.generate()], **_from(f"198.51.100.{n}"))
    await limited.installation("CUST-0042")
    for n in range(LIMIT * 3):
        await limited.activate("CUST-0042", [keyformat.generate()], **_from(f"198.51.100.{n}"))
    [good] = await limited.keys(1)

    response = await limited.activate("CUST-0042", [good], **_from("192.0.2.10"))

    assert response.status_code == 201


async def test_malformed_keys_are_refused_offline_and_not_counted(limited: Api) -> None:
    await limited.installation("ACME")
    [good] = await limited.keys(1)

    typos = [
        (await limited.activate("ACME", ["TXS-NOT-A-KEY"], **_from("203.0.113.7"))).status_code
        for _ in range(LIMIT * 2)
    ]
    response = await limited.activate("ACME", [good], **_from("203.0.113.7"))

    assert typos == [422] * (LIMIT * 2)
    assert response.status_code == 201


async def test_concurrent_guesses_from_one_client_never_pass_the_limit(limited: Api) -> None:
    await limited.installation("ACME")

    responses = await asyncio.gather(
        *(limited.activate("ACME", [keyformat.generate()], **_from("203.0.113.7")) for _ in range(300))
    )

    outcomes = Counter(r.json()["code"] for r in responses)
    assert outcomes["key_not_found"] <= LIMIT
    assert outcomes["key_not_found"] + outcomes["rate_limited"] == 300


async def test_other_clients_and_successful_activations_are_not_slowed(limited: Api) -> None:
    await limited.installation("ACME")
    await limited.installation("MINE")
    await _fail(limited, "ACME", LIMIT, **_from("203.0.113.7"))
    keys = await limited.keys(LIMIT + 2)

    outcomes = [(await limited.activate("MINE", [key], **_from("192.0.2.1"))).status_code for key in keys]

    assert outcomes == [201] * len(keys)


async def test_an_ipv6_client_is_limited_by_its_64_network(limited: Api) -> None:
    await limited.installation("ACME")
    [good, other] = await limited.keys(2)
    for n in range(LIMIT):  # one subscriber's /64 holds 2^64 addresses: changing address does not help
        await _fail(limited, "ACME", 1, **_from(f"2001:db8:0:7::{n + 1}"))

    same_network = await limited.activate("ACME", [good], **_from("2001:db8:0:7:ffff::1"))
    next_network = await limited.activate("ACME", [other], **_from("2001:db8:0:8::1"))

    assert same_network.status_code == 429
    assert next_network.status_code == 201


async def test_one_address_however_it_is_written_is_one_client(limited: Api) -> None:
    for n, spelling in enumerate(("203.0.113.7", "::ffff:203.0.113.7", "::FFFF:cb00:7107")[:LIMIT]):
        await limited.installation(f"I{n}")
        await _fail(limited, f"I{n}", 1, **_from(spelling))
    await limited.installation("ACME")
    [good] = await limited.keys(1)

    response = await limited.activate("ACME", [good], **_from("203.0.113.7"))

    assert response.status_code == 429


def _read_by_ipaddress(text: str) -> deps.Address | None:
    """The client's address as `ipaddress` alone reads it: what the dotted-quad fast path must agree with."""
    try:
        address = ipaddress.ip_address(text.strip().partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_PART = st.one_of(st.integers(0, 300).map(str), st.from_regex(r"[0-9]{1,4}", fullmatch=True), st.text(max_size=3))
_SPELLINGS = st.one_of(
    st.lists(_PART, min_size=1, max_size=6).map(".".join),
    st.text(alphabet=st.sampled_from("0123456789.:abcdefABCDEF%x \t\x00٣"), max_size=45),
    st.ip_addresses().map(str),
    st.text(max_size=45),
)


@given(_SPELLINGS)
def test_an_address_is_read_as_ipaddress_reads_it(text: str) -> None:
    assert deps._canonical(text) == _read_by_ipaddress(text)


def _named_by_ipaddress(address: str) -> str:
    """The name a client is limited under, every address read by `ipaddress`: what the shortcut for addresses
    without a colon must agree with."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"client:{address}"
    if isinstance(parsed, ipaddress.IPv6Address):
        return f"client:{ipaddress.ip_network(f'{parsed}/64', strict=False)}"
    return f"client:{address}"


@given(_SPELLINGS)
def test_a_client_is_named_as_ipaddress_reads_its_address(text: str) -> None:
    assert client_name(text) == _named_by_ipaddress(text)


async def test_forwarded_for_on_several_header_lines_is_read_whole(limited: Api) -> None:
    """A proxy that adds its own X-Forwarded-For line (HAProxy's `option forwardfor`): the client's own
    line, on the left, names whoever it likes; the proxy's line, on the right, is the truth."""

    def lines(forged: str) -> dict:
        return {"headers": [("X-Forwarded-For", forged), ("X-Forwarded-For", "198.51.100.7")]}

    for n in range(LIMIT):
        await limited.installation(f"I{n}")
        await _fail(limited, f"I{n}", 1, **lines(f"203.0.113.{n}"))
    await limited.installation("ACME")
    [good] = await limited.keys(1)
    response = await limited.activate("ACME", [good], **lines("203.0.113.99"))

    assert response.status_code == 429


async def test_a_long_scoped_address_activates_like_any_other(limited: Api) -> None:
    """The ledger records who asked; a zone id is not part of an address, and no address is a 500."""
    await limited.installation("ACME")
    [good] = await limited.keys(1)

    response = await limited.activate("ACME", [good], **_from("fe80::1%" + "x" * 80))

    assert response.status_code == 201


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(database_url: str) -> None:
    async with _limited_api(database_url, client_address="192.0.2.50", trusted_proxies=[]) as api:
        await api.installation("ACME")
        [good] = await api.keys(1)
        for n in range(LIMIT):  # a liar claiming a new address each time is still one client
            await _fail(api, "ACME", 1, **_from(f"203.0.113.{n}"))

        response = await api.activate("ACME", [good], **_from("203.0.113.200"))

    assert response.status_code == 429


# --- logins


async def _token(api: Api, client_id: str, client_secret: str, address: str) -> httpx.Response:
    return await api.client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
        **_from(address),
    )


async def test_a_client_that_keeps_failing_to_log_in_is_refused_before_any_hashing(limited: Api) -> None:
    reseller = await limited.reseller()
    for _ in range(LIMIT):
        wrong = await _token(limited, reseller["client_id"], "guess", "203.0.113.7")
        assert wrong.status_code == 401

    refused = await _token(limited, reseller["client_id"], reseller["client_secret"], "203.0.113.7")
    elsewhere = await _token(limited, reseller["client_id"], reseller["client_secret"], "192.0.2.1")

    assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited")
    assert int(refused.headers["retry-after"]) > 0
    assert elsewhere.status_code == 200


async def test_a_stranger_who_knows_a_client_id_cannot_lock_its_reseller_out(limited: Api) -> None:
    """Failures count per (address, client id): the stranger's address is refused, the reseller's is not."""
    reseller = await limited.reseller()
    for _ in range(LIMIT * 2):
        await _token(limited, reseller["client_id"], "guess", "203.0.113.66")

    stranger = await _token(limited, reseller["client_id"], reseller["client_secret"], "203.0.113.66")
    owner = await _token(limited, reseller["client_id"], reseller["client_secret"], "192.0.2.1")

    assert stranger.status_code == 429
    assert owner.status_code == 200


async def test_guessing_one_client_secret_from_many_addresses_is_limited_at_the_wider_limit(database_url: str) -> None:
    async with _limited_api(database_url, token_wide_failure_limit=LIMIT * 2) as api:
        reseller = await api.reseller()
        statuses = [
            (await _token(api, reseller["client_id"], "guess", f"198.51.100.{n}")).status_code for n in range(LIMIT * 2)
        ]

        response = await _token(api, reseller["client_id"], reseller["client_secret"], "192.0.2.1")

    assert statuses == [401] * (LIMIT * 2)
    assert response.status_code == 429


async def test_one_address_trying_many_client_ids_is_limited_at_the_wider_limit(database_url: str) -> None:
    async with _limited_api(database_url, token_wide_failure_limit=LIMIT * 2) as api:
        reseller = await api.reseller()
        for n in range(LIMIT * 2):
            assert (await _token(api, f"rs_unknown{n}", "guess", "203.0.113.7")).status_code == 401

        response = await _token(api, reseller["client_id"], reseller["client_secret"], "203.0.113.7")

    assert response.status_code == 429


async def test_rotating_the_secret_clears_the_client_ids_counters(database_url: str) -> None:
    async with _limited_api(database_url, token_wide_failure_limit=LIMIT * 2) as api:
        reseller = await api.reseller()
        for n in range(LIMIT * 2):
            await _token(api, reseller["client_id"], "guess", f"198.51.100.{n}")
        for _ in range(LIMIT):
            await _token(api, reseller["client_id"], "guess", "192.0.2.1")
        assert (await _token(api, reseller["client_id"], reseller["client_secret"], "192.0.2.1")).status_code == 429

        rotated = await api.post(f"/v1/resellers/{reseller['id']}/rotate-secret", headers=api.admin)
        assert rotated.status_code == 200
        response = await _token(api, reseller["client_id"], rotated.json()["client_secret"], "192.0.2.1")

    assert response.status_code == 200


async def test_concurrent_wrong_secrets_for_one_client_id_never_pass_the_limit(limited: Api) -> None:
    reseller = await limited.reseller()

    responses = await asyncio.gather(
        *(_token(limited, reseller["client_id"], "guess", "203.0.113.7") for _ in range(60))
    )

    statuses = Counter(r.status_code for r in responses)
    assert statuses[401] <= LIMIT
    assert statuses[401] + statuses[429] + statuses[503] == 60  # 503: more secret checks at once than queued


async def test_successful_logins_are_never_counted(limited: Api) -> None:
    reseller = await limited.reseller()

    statuses = [
        (await _token(limited, reseller["client_id"], reseller["client_secret"], "203.0.113.7")).status_code
        for _ in range(LIMIT + 2)
    ]

    assert statuses == [200] * (LIMIT + 2)


async def test_a_flood_of_logins_waits_its_turn_or_is_turned_away_at_once(database_url: str) -> None:
    """One secret check at a time and none waiting: the others are `503` with `Retry-After`, not queued."""
    async with _limited_api(
        database_url, secret_check_concurrency=1, secret_check_queue=0, token_failure_limit=100
    ) as api:
        reseller = await api.reseller()

        responses = await asyncio.gather(
            *(_token(api, reseller["client_id"], "guess", f"198.51.100.{n}") for n in range(8))
        )

    statuses = Counter(r.status_code for r in responses)
    assert statuses[401] >= 1 and statuses[503] >= 1 and statuses[401] + statuses[503] == 8
    assert all(r.headers["retry-after"] for r in responses if r.status_code == 503)


# --- Redis away


@asynccontextmanager
async def _silent_listener() -> AsyncIterator[tuple[int, Callable[[], int]]]:
    """A TCP server that accepts connections and never answers; it counts them."""
    accepted = 0
    writers = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, lambda: accepted
    finally:
        for writer in writers:
            writer.close()
        server.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


async def _limits_hold_without_redis(api: Api, redis: str = "unreachable") -> None:
    await api.installation("ACME")
    [good] = await api.keys(1)
    await _fail(api, "ACME", LIMIT, **_from("203.0.113.7"))
    assert (await api.activate("ACME", [good], **_from("203.0.113.7"))).status_code == 429
    assert (await api.activate("ACME", [good], **_from("192.0.2.1"))).status_code == 201

    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["rate_limits"] == "memory" and ready.json()["redis"] == redis


async def test_with_redis_stopped_limits_hold_in_memory(database_url: str) -> None:
    with anyio.fail_after(60):  # a guard against hanging, not a speed target
        async with _limited_api(database_url, redis_url=f"redis://127.0.0.1:{_closed_port()}/0") as api:
            await _limits_hold_without_redis(api)


async def test_with_redis_never_answering_limits_hold_in_memory_without_waiting_on_it(database_url: str) -> None:
    with anyio.fail_after(60):  # a guard against hanging, not a speed target
        async with (
            _silent_listener() as (port, accepted),
            _limited_api(database_url, redis_url=f"redis://127.0.0.1:{port}/0") as api,
        ):
            await _limits_hold_without_redis(api)
            # Redis is asked again only after a pause, not by every request in between: the first call, sent
            # again once with more patience (a lagging event loop is not Redis away), and `/readyz`'s.
            assert accepted() <= 3


async def test_the_store_in_use_is_a_metric(database_url: str) -> None:
    async with _limited_api(
        database_url, redis_url=f"redis://127.0.0.1:{_closed_port()}/0", metrics_networks=["10.0.0.0/24"]
    ) as api:
        await api.installation("ACME")
        await _fail(api, "ACME", 1)

        metrics = (await api.get("/metrics")).text

    assert 'rate_limit_store{store="memory"} 1.0' in metrics
    assert 'rate_limit_store{store="redis"} 0.0' in metrics


async def test_readiness_names_redis_while_it_answers(database_url: str) -> None:
    async with _limited_api(database_url, redis_url=_redis_url()) as api:
        ready = await api.get("/readyz")

    assert ready.json() == {"status": "ready", "rate_limits": "redis"}


@pytest.fixture
async def pg_api(database_url: str) -> AsyncIterator[Api]:
    async with _limited_api(database_url) as api:
        yield api


async def _burst(api: Api, count: int, **env: str) -> tuple[Counter[str], list[dict]]:
    """`count` activations with unknown keys from one client, all at once, spread over two server processes at
    the default limit (10) and Redis time limit; what they were answered, and what each process's `/readyz` says."""
    await api.installation("ACME")
    environment = {
        **{name: value for name, value in os.environ.items() if name not in ("REDIS_TIMEOUT_MS",)},
        "DATABASE_URL": api.settings.database_url,
        "RATE_LIMIT_PREFIX": f"test-{uuid.uuid4().hex}",
        **env,
    }
    environment.pop("ACTIVATION_FAILURE_LIMIT", None)
    with running_server(environment) as first, running_server(environment) as second:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{(first, second)[n % 2]}/v1/activations",
                        json={"installation": "ACME", "keys": [keyformat.generate()]},
                    )
                    for n in range(count)
                )
            )
            ready = [(await client.get(f"{url}/readyz")).json() for url in (first, second)]
    return Counter(r.json()["code"] for r in responses), ready


async def test_a_burst_of_150_from_one_client_on_two_processes_lets_through_at_most_the_limit(pg_api: Api) -> None:
    """The limit at its edge: Redis up, neither process turns to its memory, and at most the limit (10) of 150
    activations sent at once from one client are answered `404`; every other is `429`."""
    outcomes, ready = await _burst(pg_api, 150, REDIS_URL=_redis_url())

    assert outcomes["key_not_found"] <= 10, outcomes
    assert outcomes["key_not_found"] + outcomes["rate_limited"] == 150, outcomes
    assert ready == [{"status": "ready", "rate_limits": "redis"}] * 2


async def test_with_redis_away_a_burst_on_two_processes_lets_through_at_most_twice_the_limit(pg_api: Api) -> None:
    """The README's bound while Redis is really away: each of N processes limits on its own, N times the limit."""
    outcomes, ready = await _burst(pg_api, 150, REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")

    assert outcomes["key_not_found"] <= 2 * 10, outcomes
    assert outcomes["key_not_found"] + outcomes["rate_limited"] == 150, outcomes
    assert [answer["rate_limits"] for answer in ready] == ["memory"] * 2


@asynccontextmanager
async def _old_redis(version: str) -> AsyncIterator[int]:
    """A server speaking Redis's protocol that says it is `version` and knows no scripts (as Redis before 2.6)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                words = []
                for _ in range(int(line[1:])):
                    await reader.readline()  # $length
                    words.append((await reader.readline()).strip().decode().upper())
                if words[0] == "PING":
                    writer.write(b"+PONG\r\n")
                elif words[0] in ("CLIENT", "SELECT"):  # what a client says on connecting
                    writer.write(b"+OK\r\n")
                elif words[0] == "INFO":
                    info = f"# Server\r\nredis_version:{version}\r\n".encode()
                    writer.write(b"$%d\r\n%s\r\n" % (len(info), info))
                else:
                    writer.write(b"-ERR unknown command '%s'\r\n" % words[0].encode())
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_redis_older_than_required_is_a_logged_error_and_the_memory_store(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with _old_redis("6.0.16") as port, _limited_api(database_url, redis_url=f"redis://127.0.0.1:{port}/0") as api:
        await _limits_hold_without_redis(api, redis="too_old")
        ready = (await api.get("/readyz")).json()

    assert ready["redis_version"] == "6.0.16" and ready["redis_required"] == "6.2"
    errors = [r.getMessage() for r in caplog.records if r.name == "service.ratelimit" and r.levelname == "ERROR"]
    assert len(errors) == 1 and "6.0.16" in errors[0] and "6.2" in errors[0]


# --- what a client is told of the limit before it is refused


def _ratelimit(response: httpx.Response) -> tuple[str, str]:
    return response.headers["ratelimit-policy"], response.headers["ratelimit"]


async def test_each_activation_tells_how_many_more_may_fail_and_the_429_says_when_to_retry(limited: Api) -> None:
    window = limited.settings.activation_failure_window_seconds
    await limited.installation("ACME")
    [good] = await limited.keys(1)

    activated = await limited.activate("ACME", [good], **_from("203.0.113.7"))
    failures = [await limited.activate("ACME", [keyformat.generate()], **_from("203.0.113.7")) for _ in range(LIMIT)]
    refused = await limited.activate("ACME", [keyformat.generate()], **_from("203.0.113.7"))

    policy = f'"activation";q={LIMIT};w={window}'
    # `r` counts the request itself as if it failed: a success gives its place back.
    assert _ratelimit(activated) == (policy, f'"activation";r={LIMIT - 1};t={window}')
    remaining = [_ratelimit(response)[1].split(";")[1] for response in failures]
    assert remaining == [f"r={LIMIT - 1 - n}" for n in range(LIMIT)]
    assert refused.status_code == 429
    policy_now, quota = _ratelimit(refused)
    t = int(quota.rsplit(";t=", 1)[1])
    assert policy_now == policy and quota.startswith('"activation";r=0;') and 0 < t <= window
    assert int(refused.headers["retry-after"]) == t


async def test_logins_tell_their_limit_and_unlimited_operations_say_nothing_of_one(limited: Api) -> None:
    reseller = await limited.reseller()
    form = {"grant_type": "client_credentials", "client_id": reseller["client_id"], "client_secret": "wrong"}

    refused = await limited.client.post("/v1/auth/token", data=form, **_from("203.0.113.7"))
    support = await limited.get("/v1/installations/NOPE/support")

    assert refused.status_code == 401
    window = limited.settings.token_failure_window_seconds
    assert _ratelimit(refused)[0] == f'"token";q={LIMIT};w={window}'
    assert _ratelimit(refused)[1].startswith(f'"token";r={LIMIT - 1};')
    assert "ratelimit" not in support.headers and "ratelimit-policy" not in support.headers
