"""Webhooks at their edges: every address that is not globally routable is refused (a table of the ranges), a URL
is parsed at registration by the code that sends to it, `WEBHOOK_ALLOWED_HOSTS` names a host and port, a
delivery always ends, whatever fails while it is rendered, signed or sent, and a heartbeat that cannot be written
stops no worker."""

import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from service import webhooks
from service.delivery import Worker
from service.heartbeat import Heartbeat
from service.http import events
from tests.api import Api
from tests.conftest import make_settings, service
from tests.receiver import Receiver

pytestmark = pytest.mark.anyio

MAX_ATTEMPTS = 4


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver.running() as receiver:
        yield receiver


@pytest.fixture
async def hooks(database_url: str, receiver: Receiver) -> AsyncIterator[Api]:
    settings = make_settings(
        database_url,
        webhook_allowed_hosts=[receiver.host],
        webhook_retry_base_seconds=0,
        webhook_max_attempts=MAX_ATTEMPTS,
    )
    async with service(settings) as api:
        yield api


async def _deliver_all(api: Api, render: Any = events.render) -> None:
    worker = Worker(driver=api.driver, clock=api.clock, settings=api.settings, render=render)
    try:
        while await worker.run_once():
            pass
    finally:
        await worker.close()


async def _register(api: Api, url: str) -> Any:
    return await api.post("/v1/webhook-endpoints", {"url": url}, headers=api.admin)


async def _deliveries(api: Api, endpoint_id: str) -> list[dict]:
    response = await api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=api.admin)
    return response.json()["items"]


# One address in each range that is not globally routable (IANA's special-purpose registries, RFC 6890 and after).
NOT_ROUTABLE = [
    ("0.0.0.1", "0.0.0.0/8 this network"),
    ("10.1.2.3", "10.0.0.0/8 private"),
    ("100.64.0.1", "100.64.0.0/10 shared (carrier-grade NAT)"),
    ("127.0.0.2", "127.0.0.0/8 loopback"),
    ("169.254.169.254", "169.254.0.0/16 link-local (metadata)"),
    ("172.16.5.4", "172.16.0.0/12 private"),
    ("192.0.0.8", "192.0.0.0/24 IETF protocol assignments"),
    ("192.0.2.1", "192.0.2.0/24 documentation"),
    ("192.88.99.1", "192.88.99.0/24 6to4 relay anycast"),
    ("192.168.1.1", "192.168.0.0/16 private"),
    ("198.18.0.1", "198.18.0.0/15 benchmarking"),
    ("198.51.100.1", "198.51.100.0/24 documentation"),
    ("203.0.113.1", "203.0.113.0/24 documentation"),
    ("224.0.0.1", "224.0.0.0/4 multicast"),
    ("240.0.0.1", "240.0.0.0/4 reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "::/128 unspecified"),
    ("::1", "::1/128 loopback"),
    ("::ffff:8.8.8.8", "::ffff:0:0/96 IPv4-mapped, even of a public address"),
    ("::ffff:0:7f00:1", "::ffff:0:0:0/96 IPv4-translated"),
    ("::a9fe:a9fe", "::/96 IPv4-compatible"),
    ("64:ff9b::a9fe:a9fe", "64:ff9b::/96 NAT64"),
    ("64:ff9b:1::8.8.8.8", "64:ff9b:1::/48 local NAT64"),
    ("100::1", "100::/64 discard"),
    ("2001::1", "2001::/32 Teredo"),
    ("2001:2::1", "2001:2::/48 benchmarking"),
    ("2001:10::1", "2001:10::/28 ORCHID"),
    ("2001:db8::1", "2001:db8::/32 documentation"),
    ("2002:7f00:1::", "2002::/16 6to4"),
    ("3fff::1", "3fff::/20 documentation"),
    ("5f00::1", "5f00::/16 segment routing"),
    ("fc00::1", "fc00::/7 unique local"),
    ("fe80::1", "fe80::/10 link-local"),
    ("fec0::1", "fec0::/10 site-local"),
    ("ff02::1", "ff00::/8 multicast"),
    ("4000::1", "outside 2000::/3, the global unicast space"),
]


@pytest.mark.parametrize(("address", "range_"), NOT_ROUTABLE, ids=[r for _, r in NOT_ROUTABLE])
async def test_an_address_that_is_not_globally_routable_is_refused(hooks: Api, address: str, range_: str) -> None:
    parsed = ipaddress.ip_address(address)
    host = f"[{address}]" if parsed.version == 6 else address

    response = await _register(hooks, f"https://{host}/hooks")

    assert not webhooks.public(parsed)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e"])
async def test_a_public_address_is_taken(hooks: Api, address: str) -> None:
    host = f"[{address}]" if ":" in address else address

    assert webhooks.public(ipaddress.ip_address(address))
    assert (await _register(hooks, f"https://{host}/hooks")).status_code == 201


@pytest.mark.parametrize(
    "url",
    [
        "https://0177.0.0.1/hooks",  # octal 127.0.0.1 to a C resolver
        "https://0x7f.1/hooks",
        "https://2130706433/hooks",  # 127.0.0.1 as one number
        "https://127.1/hooks",
        "https://①②⑦.0.0.1/hooks",  # folds to 127.0.0.1
        "https://xn--/hooks",
        "https://exa mple.com/hooks",
        "https://partner.example:99999/hooks",
        "https://[::1/hooks",
    ],
)
async def test_a_url_the_sender_cannot_take_as_a_name_or_a_public_address_is_refused(hooks: Api, url: str) -> None:
    response = await _register(hooks, url)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


async def test_an_allowed_host_is_allowed_on_its_own_port_only(hooks: Api, receiver: Receiver) -> None:
    """`127.0.0.1:PORT` allowed: that port, and no other (Redis's, PostgreSQL's); a bare host: its default port."""
    for port in (6379, 5432, 80):
        response = await _register(hooks, f"http://127.0.0.1:{port}/")
        assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert (await _register(hooks, receiver.url)).status_code == 201


async def test_a_bare_allowed_host_means_its_default_port(database_url: str) -> None:
    settings = make_settings(database_url, webhook_allowed_hosts=["internal.example", "[fd00::1]:8443", "10.0.0.9:80"])
    async with service(settings) as api:
        taken = [
            (await _register(api, url)).status_code
            for url in (
                "http://internal.example/hooks",
                "https://internal.example/hooks",
                "https://[fd00::1]:8443/hooks",
                "http://10.0.0.9/hooks",
            )
        ]
        refused = [
            (await _register(api, url)).status_code
            for url in (
                "http://internal.example:8080/hooks",
                "https://[fd00::1]/hooks",
                "http://[fd00::1]/",
                "https://10.0.0.9/hooks",  # port 80 named: not https's 443
            )
        ]

    assert taken == [201, 201, 201, 201]
    assert refused == [400, 400, 400, 400]


async def test_an_allowed_host_on_another_port_is_not_connected_to(hooks: Api, receiver: Receiver) -> None:
    """Checked again when sent: a URL stored before this rule (or by hand) to another port is not connected to."""
    hook = (await _register(hooks, receiver.url)).json()
    other_port = receiver.url.replace(receiver.host, "127.0.0.1:6379")
    async with hooks.engine.begin() as connection:
        await connection.execute(text("UPDATE webhook_endpoints SET url = :url"), {"url": other_port})
    await hooks.installation("ACME")

    await _deliver_all(hooks)

    assert receiver.received == []
    [delivery] = await _deliveries(hooks, hook["id"])
    assert delivery["status"] == "failed" and delivery["last_error"].startswith("AddressRefused")


async def test_a_stored_url_the_sender_cannot_parse_fails_its_delivery_after_its_attempts(hooks: Api) -> None:
    """A URL registered before it was checked as the sender parses it: each attempt is recorded as failed, and the
    delivery ends `failed` at its attempt limit, its endpoint marked failing."""
    hook = (await _register(hooks, "https://partner.example/hooks")).json()
    async with hooks.engine.begin() as connection:
        await connection.execute(text("UPDATE webhook_endpoints SET url = 'https://①②⑦.0.0.1/hooks'"))
    await hooks.installation("ACME")

    await _deliver_all(hooks)

    [delivery] = await _deliveries(hooks, hook["id"])
    assert (delivery["status"], delivery["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert delivery["last_error"].startswith("InvalidURL")
    [listed] = (await hooks.get("/v1/webhook-endpoints", headers=hooks.admin)).json()["items"]
    assert listed["failing_since"] is not None


async def test_an_error_while_rendering_a_delivery_is_recorded_as_its_attempts_failure(
    hooks: Api, receiver: Receiver
) -> None:
    hook = (await _register(hooks, receiver.url)).json()
    await hooks.installation("ACME")

    def broken(claim: webhooks.Claim) -> bytes:
        raise KeyError("a field the renderer expected")

    await _deliver_all(hooks, render=broken)

    assert receiver.received == []
    [delivery] = await _deliveries(hooks, hook["id"])
    assert (delivery["status"], delivery["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert delivery["last_error"].startswith("KeyError")


async def test_a_delivery_claimed_at_its_attempt_limit_is_failed_not_sent(hooks: Api, receiver: Receiver) -> None:
    """A worker that died during the last attempt leaves the delivery due again when its lease ends: the next
    worker ends it rather than sending an attempt past the limit."""
    hook = (await _register(hooks, receiver.url)).json()
    await hooks.installation("ACME")
    await _deliver_all(hooks, render=lambda claim: (_ for _ in ()).throw(AssertionError("not yet")))
    async with hooks.engine.begin() as connection:
        await connection.execute(
            text("UPDATE webhook_deliveries SET status = 'pending', attempts = :n, next_attempt_at = :due"),
            {"n": MAX_ATTEMPTS, "due": hooks.clock.now()},
        )

    await _deliver_all(hooks)

    assert receiver.received == []
    [delivery] = await _deliveries(hooks, hook["id"])
    assert (delivery["status"], delivery["attempts"]) == ("failed", MAX_ATTEMPTS)


def test_a_heartbeat_that_cannot_be_written_is_logged_once_until_it_can_be_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker goes on delivering; its log says why its liveness check fails, once, not at every pass."""
    folder = tmp_path / "gone"
    heartbeat = Heartbeat(folder / "heartbeat")

    with caplog.at_level(logging.WARNING, logger="service.webhooks"):
        heartbeat.clear()
        heartbeat.beat()
        heartbeat.beat()
        folder.mkdir()
        heartbeat.beat()
        (folder / "heartbeat").unlink()
        folder.rmdir()
        heartbeat.beat()

    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2 and all("cannot be written" in warning for warning in warnings), warnings
