"""Webhooks: resellers hear of what happens to their installations and keys, signed as Standard Webhooks (verified
with the `standardwebhooks` library, as a receiver would), at least once, with the same `webhook-id` on every
retry; nothing a rolled-back change did is announced. A real receiver on 127.0.0.1 (allowed by
`WEBHOOK_ALLOWED_HOSTS`), and the worker's rounds run by the test, on the service's clock."""

import asyncio
import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any, get_args

import pytest
from sqlalchemy import func, select

from service import webhooks
from service.delivery import Worker
from service.http import events
from service.http.openapi import document
from service.http.schemas.webhooks import (
    ActivationCreated,
    ActivationVoided,
    EventType,
    InstallationRegistered,
    KeyRevoked,
    SupportExpiring,
    SupportLapsed,
)
from service.models import WebhookEvent
from tests.api import Api
from tests.conftest import make_settings, service
from tests.receiver import Receiver

pytestmark = pytest.mark.anyio

DOCUMENTED = {
    "activation.created": ActivationCreated,
    "activation.voided": ActivationVoided,
    "installation.registered": InstallationRegistered,
    "key.revoked": KeyRevoked,
    "installation.support_expiring": SupportExpiring,
    "installation.support_lapsed": SupportLapsed,
}


@pytest.fixture
async def hooks(database_url: str) -> AsyncIterator[Api]:
    """The service sending to 127.0.0.1, retrying at once (no backoff) at most 4 times."""
    settings = make_settings(
        database_url,
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_retry_base_seconds=0,
        webhook_max_attempts=4,
        metrics_token="scrape",
    )
    async with service(settings) as api:
        yield api


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver.running() as receiver:
        yield receiver


def worker_of(api: Api) -> Worker:
    return Worker(driver=api.driver, clock=api.clock, settings=api.settings, render=events.render)


async def deliver_all(api: Api, *workers: Worker) -> None:
    """Rounds of each worker until nothing is due."""
    for worker in workers or (worker_of(api),):
        try:
            while await worker.run_once():
                pass
        finally:
            if not workers:
                await worker.close()


async def endpoint(api: Api, url: str, headers: dict | None = None, **body: Any) -> dict:
    response = await api.post("/v1/webhook-endpoints", {"url": url, **body}, headers=headers or api.admin)
    assert response.status_code == 201, response.text
    return response.json()


async def deliveries(api: Api, endpoint_id: str) -> list[dict]:
    response = await api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=api.admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_every_event_reaches_the_reseller_it_is_about_in_the_apis_representation_and_verifies(
    hooks: Api, receiver: Receiver
) -> None:
    partner, other = await hooks.reseller("Partner"), await hooks.reseller("Other")
    mine = await endpoint(hooks, receiver.url, partner["headers"])
    everything = await endpoint(hooks, f"{receiver.url}/everything")  # the operator's: every reseller's events
    registered = await hooks.installation("ACME", purchased_on="2026-11-20", reseller_id=partner["id"])
    await hooks.installation("THEIRS", purchased_on="2026-11-20", reseller_id=other["id"])
    issued = (await hooks.post("/v1/keys", {"count": 2, "reseller_id": partner["id"]}, headers=hooks.admin)).json()
    used, unused = issued["keys"]
    activation = (await hooks.activate("ACME", [used["key"]])).json()
    voided = await hooks.post(
        f"/v1/activations/{activation['activation_id']}/void", {"reason": "refund"}, headers=hooks.admin
    )
    revoked = await hooks.post(f"/v1/keys/{unused['key_id']}/revoke", headers=hooks.admin)
    await deliver_all(hooks)
    hooks.stand_on(date(2027, 11, 1))  # support ends on 2027-11-20: within 30 days
    await deliver_all(hooks)
    hooks.stand_on(date(2027, 11, 21))
    await deliver_all(hooks)

    sent = {r.event["type"]: r.verified(mine["secret"]) for r in receiver.at(mine["url"])}
    assert sorted(sent) == sorted(webhooks.EVENT_TYPES)
    assert len(receiver.at(mine["url"])) == 6, "nothing of the other reseller's"
    assert sent["installation.registered"]["data"] == registered
    assert sent["activation.created"]["data"] == activation
    assert sent["activation.voided"]["data"] == voided.json()
    assert sent["key.revoked"]["data"] == revoked.json()
    for notice in ("installation.support_expiring", "installation.support_lapsed"):
        assert (sent[notice]["data"]["code"], sent[notice]["data"]["support_end"]) == ("ACME", "2027-11-20")
    for event in sent.values():
        assert re.fullmatch(r"[0-9a-f-]{36}", event["id"]) and event["timestamp"]
        DOCUMENTED[event["type"]].model_validate(event)  # the body the API document describes
    operator = [r.verified(everything["secret"]) for r in receiver.at(everything["url"])]
    assert {e["data"].get("code") for e in operator if e["type"] == "installation.registered"} == {"ACME", "THEIRS"}


def test_the_api_document_describes_each_events_body_with_the_apis_own_models() -> None:
    spec = json.loads(document())
    schemas = spec["components"]["schemas"]

    assert set(spec["webhooks"]) == set(webhooks.EVENT_TYPES) == set(get_args(EventType))
    for event_type, model in DOCUMENTED.items():
        operation = spec["webhooks"][event_type]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model.__name__}"}
        assert "webhook-signature" in operation["description"]
    assert schemas["ActivationCreated"]["properties"]["data"]["$ref"].endswith("/ActivationOut")
    assert schemas["KeyRevoked"]["properties"]["data"]["$ref"].endswith("/KeyOut")


async def test_a_cascading_void_announces_each_activation_it_voided(hooks: Api, receiver: Receiver) -> None:
    hook = await endpoint(hooks, receiver.url, event_types=["activation.voided"])
    await hooks.installation("ACME", purchased_on="2026-11-20")
    first_key, second_key = await hooks.keys(2)
    first = (await hooks.activate("ACME", [first_key])).json()
    second = (await hooks.activate("ACME", [second_key])).json()

    voided = await hooks.post(
        f"/v1/activations/{first['activation_id']}/void", {"reason": "refund", "cascade": True}, headers=hooks.admin
    )
    await deliver_all(hooks)

    events = [r.verified(hook["secret"]) for r in receiver.received]
    assert voided.json()["voided"] == [second["activation_id"], first["activation_id"]]
    assert sorted(e["data"]["activation_id"] for e in events) == sorted(voided.json()["voided"])
    assert len({e["id"] for e in events}) == 2
    assert all(e["data"] | {"activation_id": None} == voided.json() | {"activation_id": None} for e in events)


async def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt_with_the_same_id(
    hooks: Api, receiver: Receiver
) -> None:
    hook = await endpoint(hooks, receiver.url)
    receiver.answers = [500, 500, 503]
    await hooks.installation("ACME")

    await deliver_all(hooks)

    assert len(receiver.received) == 4
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    assert receiver.received[-1].verified(hook["secret"])["type"] == "installation.registered"
    [delivery] = await deliveries(hooks, hook["id"])
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("delivered", 4, 200)
    assert delivery["event_id"] == receiver.received[0].headers["webhook-id"]


async def test_out_of_attempts_the_endpoint_is_failing_and_the_admin_redelivers(hooks: Api, receiver: Receiver) -> None:
    hook = await endpoint(hooks, receiver.url)
    receiver.answers = [500] * 4
    await hooks.installation("ACME")
    await deliver_all(hooks)
    [failed] = await deliveries(hooks, hook["id"])
    [listed] = (await hooks.get("/v1/webhook-endpoints", headers=hooks.admin)).json()["items"]

    redelivered = await hooks.post(
        f"/v1/webhook-endpoints/{hook['id']}/deliveries/{failed['id']}/redeliver", headers=hooks.admin
    )
    await deliver_all(hooks)

    assert (failed["status"], failed["attempts"], failed["last_status_code"]) == ("failed", 4, 500)
    assert failed["response_excerpt"] == ("receiver trouble " * 100)[:500], "no more of the answer than its start"
    assert listed["failing_since"] is not None
    assert redelivered.status_code == 200 and redelivered.json()["status"] == "pending"
    assert len(receiver.received) == 5 and len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert (await deliveries(hooks, hook["id"]))[0]["status"] == "delivered"
    [healthy] = (await hooks.get("/v1/webhook-endpoints", headers=hooks.admin)).json()["items"]
    assert healthy["failing_since"] is None


async def test_a_pending_delivery_redelivered_stays_as_it_is(hooks: Api, receiver: Receiver) -> None:
    """It is on its way already, and may be in a worker's hands: a fresh round now would send it twice at once."""
    hook = await endpoint(hooks, receiver.url)
    receiver.answers = [500]
    await hooks.installation("ACME")
    worker = worker_of(hooks)
    try:
        await worker.run_once()
    finally:
        await worker.close()
    [pending] = await deliveries(hooks, hook["id"])

    again = await hooks.post(
        f"/v1/webhook-endpoints/{hook['id']}/deliveries/{pending['id']}/redeliver", headers=hooks.admin
    )

    assert (pending["status"], pending["attempts"]) == ("pending", 1)
    assert again.json() == pending


async def test_retries_back_off_exponentially_with_jitter_over_about_a_day() -> None:
    """The defaults: 5 s doubled for each of 15 attempts; the jitter spreads each wait over ±25 %."""
    waits = [webhooks.retry_delay(attempt, 5, 0.5) for attempt in range(1, 15)]

    assert waits[:4] == [timedelta(seconds=s) for s in (5, 10, 20, 40)]
    assert all(later == 2 * earlier for earlier, later in itertools.pairwise(waits))
    assert timedelta(hours=20) < sum(waits, timedelta()) < timedelta(hours=26)
    assert (webhooks.retry_delay(3, 5, 0), webhooks.retry_delay(3, 5, 1)) == (
        timedelta(seconds=15),
        timedelta(seconds=25),
    )


async def test_an_activation_rolled_back_announces_nothing(hooks: Api, receiver: Receiver) -> None:
    """One key already used: the activation's writes (its one statement, the fresh key taken in it) are undone,
    and so is its event."""
    await endpoint(hooks, receiver.url, event_types=["activation.created"])
    await hooks.installation("ACME")
    await hooks.installation("OTHER")
    used, fresh = await hooks.keys(2)
    first = (await hooks.activate("OTHER", [used])).json()

    refused = await hooks.activate("ACME", [fresh, used])
    await deliver_all(hooks)

    assert refused.json()["code"] == "key_already_used"
    assert [e["data"]["activation_id"] for e in receiver.events()] == [first["activation_id"]]
    async with hooks.engine.connect() as connection:
        events = await connection.scalar(select(func.count()).select_from(WebhookEvent))
    assert events == 3  # two registrations, one activation


async def test_support_expiring_is_announced_once_per_support_period_whichever_worker_finds_it(
    hooks: Api, receiver: Receiver
) -> None:
    await endpoint(hooks, receiver.url, event_types=["installation.support_expiring", "installation.support_lapsed"])
    await hooks.installation("ACME", purchased_on="2026-11-20")  # support to 2027-11-20
    [key] = await hooks.keys(1)
    first, second = worker_of(hooks), worker_of(hooks)

    async def on(day: date) -> list[tuple[str, str]]:
        hooks.stand_on(day)
        await deliver_all(hooks, first, second)
        return [(e["type"].rpartition("_")[2], e["data"]["support_end"]) for e in receiver.events()]

    try:
        assert await on(date(2027, 10, 20)) == []  # 31 days before the end
        assert await on(date(2027, 10, 21)) == [("expiring", "2027-11-20")]
        assert await on(date(2027, 10, 22)) == [("expiring", "2027-11-20")]
        assert (await hooks.activate("ACME", [key])).json()["support_end_after"] == "2029-01-20"
        assert await on(date(2027, 11, 21)) == [("expiring", "2027-11-20")]  # renewed: nothing lapsed
        assert await on(date(2028, 12, 21)) == [("expiring", "2027-11-20"), ("expiring", "2029-01-20")]
        assert await on(date(2029, 1, 20)) == [("expiring", "2027-11-20"), ("expiring", "2029-01-20")]
        lapsed = [("expiring", "2027-11-20"), ("expiring", "2029-01-20"), ("lapsed", "2029-01-20")]
        assert await on(date(2029, 1, 21)) == lapsed  # the day after the end
        assert await on(date(2029, 1, 25)) == lapsed
    finally:
        await first.close()
        await second.close()


async def test_the_secret_is_shown_once_and_a_rotated_one_signs_what_follows(hooks: Api, receiver: Receiver) -> None:
    hook = await endpoint(hooks, receiver.url)
    listed = (await hooks.get("/v1/webhook-endpoints", headers=hooks.admin)).json()["items"]
    rotated = (await hooks.post(f"/v1/webhook-endpoints/{hook['id']}/rotate-secret", headers=hooks.admin)).json()
    await hooks.installation("ACME")
    await deliver_all(hooks)

    assert hook["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]
    assert "secret" not in listed[0] and hook["secret"] not in str(listed)
    assert receiver.received[0].verified(rotated["secret"])["type"] == "installation.registered"
    with pytest.raises(Exception, match="signature"):
        receiver.received[0].verified(hook["secret"])


async def test_a_registration_retried_with_its_idempotency_key_registers_one_endpoint(hooks: Api) -> None:
    headers = {**hooks.admin, "Idempotency-Key": "endpoint-1"}
    body = {"url": "https://partner.example/hooks"}

    first = await hooks.post("/v1/webhook-endpoints", body, headers=headers)
    retry = await hooks.post("/v1/webhook-endpoints", body, headers=headers)

    assert (first.status_code, retry.content, retry.headers["idempotent-replayed"]) == (201, first.content, "true")
    assert len((await hooks.get("/v1/webhook-endpoints", headers=hooks.admin)).json()["items"]) == 1


async def test_a_reseller_manages_its_own_endpoints_only(hooks: Api, receiver: Receiver) -> None:
    partner, other = await hooks.reseller("Partner"), await hooks.reseller("Other")
    theirs = await endpoint(hooks, receiver.url, other["headers"])
    mine = await endpoint(hooks, receiver.url, partner["headers"], event_types=["key.revoked"])
    base = "/v1/webhook-endpoints"

    listed = (await hooks.get(base, headers=partner["headers"])).json()["items"]
    for_other = await hooks.post(base, {"url": receiver.url, "reseller_id": other["id"]}, headers=partner["headers"])
    attempts = [
        await hooks.post(f"{base}/{theirs['id']}/disable", headers=partner["headers"]),
        await hooks.post(f"{base}/{theirs['id']}/rotate-secret", headers=partner["headers"]),
        await hooks.get(f"{base}/{theirs['id']}/deliveries", headers=partner["headers"]),
        await hooks.client.delete(f"{base}/{theirs['id']}", headers=partner["headers"]),
    ]

    assert [e["id"] for e in listed] == [mine["id"]]
    assert (mine["reseller_id"], mine["event_types"]) == (partner["id"], ["key.revoked"])
    assert for_other.status_code == 403
    assert [(r.status_code, r.json()["code"]) for r in attempts] == [(404, "webhook_endpoint_not_found")] * 4
    assert len((await hooks.get(base, headers=hooks.admin)).json()["items"]) == 2


async def test_a_disabled_or_deleted_endpoint_is_sent_nothing(hooks: Api, receiver: Receiver) -> None:
    disabled, deleted = await endpoint(hooks, receiver.url), await endpoint(hooks, receiver.url)
    disabling = await hooks.post(f"/v1/webhook-endpoints/{disabled['id']}/disable", headers=hooks.admin)
    deleting = await hooks.client.delete(f"/v1/webhook-endpoints/{deleted['id']}", headers=hooks.admin)
    await hooks.installation("ACME")

    await deliver_all(hooks)

    assert disabling.json()["disabled_at"] is not None and deleting.status_code == 204
    assert receiver.received == []
    assert [e["id"] for e in (await hooks.get("/v1/webhook-endpoints", headers=hooks.admin)).json()["items"]] == [
        disabled["id"]
    ]
    gone = await hooks.get(f"/v1/webhook-endpoints/{deleted['id']}/deliveries", headers=hooks.admin)
    assert gone.status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://partner.example/hooks",
        "https://10.0.0.7/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.2]/hooks",
        "https://[64:ff9b::a9fe:a9fe]/hooks",  # NAT64 of 169.254.169.254
        "https://[2002:7f00:1::]/hooks",  # 6to4 of 127.0.0.1
        "https://[::a9fe:a9fe]/hooks",  # IPv4-compatible 169.254.169.254
        "https://user:password@partner.example/hooks",
        "ftp://partner.example/hooks",
        "partner.example/hooks",
    ],
)
async def test_an_endpoint_is_https_at_a_public_address_unless_its_host_is_allowed(hooks: Api, url: str) -> None:
    refused = await hooks.post("/v1/webhook-endpoints", {"url": url}, headers=hooks.admin)

    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_request")


async def test_an_allowed_host_and_a_public_https_url_are_taken(hooks: Api) -> None:
    for url in ("https://partner.example/hooks", "http://127.0.0.1:9/hooks"):
        assert (await hooks.post("/v1/webhook-endpoints", {"url": url}, headers=hooks.admin)).status_code == 201


async def test_a_name_resolving_to_an_inner_address_is_not_connected_to(hooks: Api, receiver: Receiver) -> None:
    """`localhost` is a name: taken when registered, then refused on the address it resolves to when sent."""
    inner = receiver.url.replace("http://127.0.0.1", "https://localhost")
    hook = await endpoint(hooks, inner)
    await hooks.installation("ACME")

    await deliver_all(hooks)

    assert receiver.received == []
    [delivery] = await deliveries(hooks, hook["id"])
    assert delivery["status"] == "failed" and delivery["last_error"].startswith("AddressRefused")


async def test_a_name_no_resolver_takes_fails_its_own_delivery_and_no_other(hooks: Api, receiver: Receiver) -> None:
    """A label over 63 bytes is taken when registered (a name is checked when sent), and then refused by the
    resolver with a UnicodeError, not an OSError: that delivery fails, and the others of the round are sent."""
    unresolvable = await endpoint(hooks, f"https://{'a' * 70}.example/hooks")
    await endpoint(hooks, receiver.url)
    await hooks.installation("ACME")

    await deliver_all(hooks)

    assert len(receiver.received) == 1
    [delivery] = await deliveries(hooks, unresolvable["id"])
    assert (delivery["status"], delivery["attempts"]) == ("failed", 4)
    assert delivery["last_error"].startswith("ConnectError")


async def test_a_receiver_answering_a_byte_at_a_time_is_given_up_on_in_the_timeout(database_url: str) -> None:
    """httpx's timeout bounds each read; the attempt as a whole is bounded too (`WEBHOOK_TIMEOUT_SECONDS`)."""

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):
                writer.write(b".")
                await writer.drain()
                await asyncio.sleep(0.2)

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(
        database_url, webhook_allowed_hosts=["127.0.0.1"], webhook_timeout_seconds=1, webhook_max_attempts=1
    )
    async with server, service(settings) as api:
        hook = await endpoint(api, f"http://127.0.0.1:{port}/hooks")
        await api.installation("ACME")

        async with asyncio.timeout(30):
            await deliver_all(api)

        [delivery] = await deliveries(api, hook["id"])
    assert delivery["status"] == "failed" and delivery["last_error"].startswith("TimeoutError")


async def test_a_name_is_connected_to_at_the_address_checked_and_keeps_its_host_header(
    database_url: str, receiver: Receiver
) -> None:
    settings = make_settings(database_url, webhook_allowed_hosts=["localhost"])
    async with service(settings) as api:
        port = receiver.url.split(":")[2].split("/")[0]
        await endpoint(api, f"http://localhost:{port}/hooks")
        await api.installation("ACME")

        await deliver_all(api)

    [received] = receiver.received
    assert received.headers["host"] == f"localhost:{port}"


async def test_no_proxy_from_the_environment_carries_a_delivery(
    hooks: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would connect to the host by itself, past the address the service checked."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    await endpoint(hooks, receiver.url)
    await hooks.installation("ACME")

    await deliver_all(hooks)

    assert len(receiver.received) == 1


async def test_metrics_count_deliveries_and_age_the_oldest_undelivered_event(hooks: Api, receiver: Receiver) -> None:
    scrape = {"Authorization": "Bearer scrape"}
    await endpoint(hooks, receiver.url)
    await hooks.installation("ACME")
    waiting = (await hooks.get("/metrics", headers=scrape)).text
    await deliver_all(hooks)
    done = (await hooks.get("/metrics", headers=scrape)).text

    assert float(re.search(r"^webhook_oldest_undelivered_seconds (\S+)$", waiting, re.M).group(1)) > 0  # type: ignore[union-attr]
    assert re.search(r"^webhook_oldest_undelivered_seconds 0\.0$", done, re.M)
    assert re.search(r'^webhook_deliveries_total\{outcome="delivered"\} [1-9]', done, re.M)
