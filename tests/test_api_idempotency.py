"""`Idempotency-Key`: a retried POST that creates something gets the first answer again, byte for byte, and creates
nothing more; the same key for another request, or while the first is still running, is refused."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy import URL, func, select, update
from sqlalchemy.engine import make_url

from service import idempotency
from service.db import create_engine
from service.models import IdempotencyKey, LicenseKey
from tests.api import ISSUED_KEYS, Api
from tests.conftest import empty_tables, make_settings
from tests.servers import running_server

pytestmark = pytest.mark.anyio


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def _keys_issued(api: Api) -> int:
    async with api.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(LicenseKey))).scalar_one()


async def test_a_retried_key_issue_answers_the_first_answer_again_and_issues_no_more_keys(api: Api) -> None:
    first = await api.post("/v1/keys", {"count": 3}, headers=keyed(api.admin, "order-4711"))
    retry = await api.post("/v1/keys", {"count": 3}, headers=keyed(api.admin, "order-4711"))

    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.content == first.content
    assert retry.headers["content-type"] == first.headers["content-type"] == "application/json"
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await _keys_issued(api) == 3


async def test_requests_sent_at_once_with_one_key_issue_one_batch(api: Api) -> None:
    responses = await asyncio.gather(
        *(api.post("/v1/keys", {"count": 50}, headers=keyed(api.admin, "order-4711")) for _ in range(6))
    )

    assert {r.status_code for r in responses} <= {201, 409}
    assert len({r.content for r in responses if r.status_code == 201}) == 1
    assert {r.json()["code"] for r in responses if r.status_code == 409} <= {"idempotency_key_in_flight"}
    assert await _keys_issued(api) == 50


async def test_the_same_request_spelled_differently_is_the_same_request(api: Api) -> None:
    headers = {**keyed(api.admin, "k"), "Content-Type": "application/json"}
    first = await api.client.post("/v1/keys", content=b'{"count": 2, "reseller_id": null}', headers=headers)
    retry = await api.client.post("/v1/keys", content=b'{"reseller_id":null,"count":2}', headers=headers)
    ISSUED_KEYS.update(k["key"] for k in first.json()["keys"])

    assert retry.content == first.content and retry.headers["idempotent-replayed"] == "true"


async def test_without_the_header_every_request_creates(api: Api) -> None:
    await api.post("/v1/keys", {"count": 3}, headers=api.admin)
    await api.post("/v1/keys", {"count": 3}, headers=api.admin)

    assert await _keys_issued(api) == 6


async def test_the_same_key_with_another_request_is_refused(api: Api) -> None:
    await api.post("/v1/keys", {"count": 3}, headers=keyed(api.admin, "order-4711"))

    other_body = await api.post("/v1/keys", {"count": 4}, headers=keyed(api.admin, "order-4711"))
    other_route = await api.post("/v1/resellers", {"name": "Partner"}, headers=keyed(api.admin, "order-4711"))

    for refused in (other_body, other_route):
        assert (refused.status_code, refused.json()["code"]) == (422, "idempotency_key_reused")
    assert await _keys_issued(api) == 3


async def test_keys_are_each_callers_own(api: Api) -> None:
    """Two callers choosing the same key neither collide nor see each other's answer."""
    other_admin = api.headers_for("admin", "another-admin")
    reseller = await api.reseller()

    mine = await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "1"))
    theirs = await api.post("/v1/keys", {"count": 1}, headers=keyed(other_admin, "1"))
    registered = await api.post(
        "/v1/installations", {"code": "ACME", "purchased_on": "2026-11-01"}, headers=keyed(reseller["headers"], "1")
    )

    assert [r.status_code for r in (mine, theirs, registered)] == [201, 201, 201]
    assert "idempotent-replayed" not in theirs.headers and theirs.content != mine.content
    assert await _keys_issued(api) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "schlüssel", "tab\there"])
async def test_a_key_that_is_not_1_to_255_printable_ascii_characters_is_refused(api: Api, key: str) -> None:
    headers = [*api.admin.items(), ("Idempotency-Key", key.encode())]

    response = await api.client.post("/v1/keys", json={"count": 1}, headers=headers)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert await _keys_issued(api) == 0


async def test_a_key_of_255_printable_characters_is_taken(api: Api) -> None:
    key = "".join(chr(32 + n % 95) for n in range(255))

    response = await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, key))

    assert response.status_code == 201


async def test_a_refusal_is_answered_again_too(api: Api) -> None:
    unknown_reseller = {"count": 1, "reseller_id": "00000000-0000-0000-0000-000000000001"}

    first = await api.post("/v1/keys", unknown_reseller, headers=keyed(api.admin, "k"))
    retry = await api.post("/v1/keys", unknown_reseller, headers=keyed(api.admin, "k"))

    assert (first.status_code, first.json()["code"]) == (404, "reseller_not_found")
    assert retry.content == first.content and retry.status_code == 404
    assert retry.headers["content-type"] == "application/problem+json"
    assert retry.headers["idempotent-replayed"] == "true"


async def test_a_request_refused_before_it_runs_does_not_use_the_key(api: Api) -> None:
    invalid = await api.post("/v1/keys", {"count": 0}, headers=keyed(api.admin, "k"))
    corrected = await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "k"))

    assert (invalid.status_code, corrected.status_code) == (400, 201)


async def test_every_creating_post_answers_a_retry_with_its_first_answer(api: Api) -> None:
    """Registering a reseller or an installation, rotating a secret, voiding: each retried once, and what it made
    made once."""
    reseller_body = {"name": "Partner"}
    created = await api.post("/v1/resellers", reseller_body, headers=keyed(api.admin, "r"))
    reseller_id = created.json()["id"]
    installation_body = {"code": "ACME", "purchased_on": "2026-11-01"}
    registered = await api.post("/v1/installations", installation_body, headers=keyed(api.admin, "i"))
    rotation = f"/v1/resellers/{reseller_id}/rotate-secret"
    rotated = await api.post(rotation, headers=keyed(api.admin, "s"))
    activation = await api.activate("ACME", await api.keys(1))
    void = f"/v1/activations/{activation.json()['activation_id']}/void"
    voided = await api.post(void, {"reason": "refund"}, headers=keyed(api.admin, "v"))

    retries = [
        await api.post("/v1/resellers", reseller_body, headers=keyed(api.admin, "r")),
        await api.post("/v1/installations", installation_body, headers=keyed(api.admin, "i")),
        await api.post(rotation, headers=keyed(api.admin, "s")),
        await api.post(void, {"reason": "refund"}, headers=keyed(api.admin, "v")),
    ]

    firsts = [created, registered, rotated, voided]
    assert [r.status_code for r in firsts] == [201, 201, 200, 200]
    assert [r.content for r in retries] == [r.content for r in firsts]
    assert all(r.headers["idempotent-replayed"] == "true" for r in retries)
    credentials = {"client_id": created.json()["client_id"], "client_secret": rotated.json()["client_secret"]}
    token = await api.client.post("/v1/auth/token", data={"grant_type": "client_credentials", **credentials})
    assert token.status_code == 200, "the secret answered again is the one in force: not rotated twice"


async def _stored_answers(api: Api) -> list[bytes]:
    async with api.engine.connect() as conn:
        return list((await conn.execute(select(IdempotencyKey.body))).scalars())


async def test_answers_holding_keys_or_secrets_are_stored_encrypted(api: Api) -> None:
    issued = await api.post("/v1/keys", {"count": 2}, headers=keyed(api.admin, "k"))
    reseller = await api.post("/v1/resellers", {"name": "Partner"}, headers=keyed(api.admin, "r"))

    stored = b"".join(await _stored_answers(api))

    secrets = [k["key"] for k in issued.json()["keys"]] + [reseller.json()["client_secret"]]
    assert len(await _stored_answers(api)) == 2
    assert not any(secret.encode() in stored or secret.replace("-", "").encode() in stored for secret in secrets)
    assert b"client_secret" not in stored and b"keys" not in stored


async def test_after_its_lifetime_a_key_runs_afresh_and_its_old_answer_is_purged(api: Api) -> None:
    first = await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "k"))
    await _expire_every_key(api)

    again = await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "k"))

    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    assert again.content != first.content
    assert len(await _stored_answers(api)) == 1
    assert await _keys_issued(api) == 2


async def test_expired_keys_are_purged_by_each_new_claim_of_their_caller_and_by_a_command(api: Api) -> None:
    await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "old"))
    await _expire_every_key(api)
    await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "new"))
    assert len(await _stored_answers(api)) == 1, "the new claim purged its caller's expired keys"
    await _expire_every_key(api)

    purge = subprocess.run(
        [sys.executable, "-m", "service.cli", "purge-idempotency-keys"],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": api.settings.database_url},
        timeout=60,
    )

    assert (purge.returncode, purge.stderr) == (0, "1 expired idempotency key(s) purged\n")
    assert await _stored_answers(api) == []


async def _expire_every_key(api: Api) -> None:
    """A day goes by."""
    async with api.engine.begin() as conn:
        await conn.execute(update(IdempotencyKey).values(expires_at=func.now()))


async def test_a_request_still_running_under_the_key_is_refused_and_an_abandoned_one_taken_over(api: Api) -> None:
    """A process that claimed the key died before answering: the key is in flight until its claim times out."""
    attempt = idempotency.attempt(
        scope="admin:test-admin", key="k", method="POST", target="/v1/keys", body=b'{"count": 1}'
    )
    sealer = idempotency.Sealer(b"any")
    claimed = await idempotency.claim(
        driver=api.driver, attempt=attempt, now=api.clock.now(), ttl=timedelta(hours=24), sealer=sealer
    )
    assert isinstance(claimed, idempotency.Claim)
    claimed_at = api.clock.now()

    in_flight = await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "k"))
    async with api.engine.begin() as conn:
        await conn.execute(update(IdempotencyKey).values(claimed_at=claimed_at - idempotency.CLAIM_TIMEOUT))
    taken_over = await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "k"))
    await idempotency.store(
        driver=api.driver,
        claim=claimed,
        answer=idempotency.Answer(201, "application/json", b"{}"),
        sealer=sealer,
    )
    replayed = await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "k"))

    assert (in_flight.status_code, in_flight.json()["code"]) == (409, "idempotency_key_in_flight")
    assert in_flight.headers["retry-after"] == "1"
    assert taken_over.status_code == 201
    assert replayed.content == taken_over.content, "the overtaken claim's late answer is not kept"
    assert await _keys_issued(api) == 1


async def test_a_request_that_fails_is_not_kept_and_its_retry_runs_afresh(database_url: str) -> None:
    """The service cannot write keys (its role lost the right to): the failure (`500`) is not the answer kept for
    the key, and once the service can write again, the retry issues the keys."""
    role = f"timex_no_keys_{uuid.uuid4().hex[:12]}"
    database = make_url(database_url).set(drivername="postgresql")
    await _as_superuser(
        database,
        f'CREATE ROLE "{role}" LOGIN',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"',
        f'REVOKE INSERT ON license_keys FROM "{role}"',
    )
    settings = make_settings(database.set(drivername="postgresql+asyncpg", username=role).render_as_string(False))
    engine = create_engine(database_url)
    try:
        async with Api.started(settings, engine, today=date(2026, 11, 24)) as api:
            failed = await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "k"))
            await _as_superuser(database, f'GRANT INSERT ON license_keys TO "{role}"')
            retried = await api.post("/v1/keys", {"count": 1}, headers=keyed(api.admin, "k"))
            await empty_tables(engine)
    finally:
        await engine.dispose()
        await _as_superuser(database, f'DROP OWNED BY "{role}"', f'DROP ROLE IF EXISTS "{role}"')

    assert failed.status_code == 500
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers


async def _as_superuser(database: URL, *statements: str) -> None:
    connection = await asyncpg.connect(database.render_as_string(hide_password=False))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def two_servers(database_url: str) -> Iterator[list[str]]:
    env = {**os.environ, "DATABASE_URL": database_url}
    with running_server(env) as first, running_server(env) as second:
        yield [first, second]


async def test_one_key_sent_to_two_processes_at_once_issues_one_batch(api: Api, two_servers: list[str]) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{two_servers[n % 2]}/v1/keys", json={"count": 2000}, headers=keyed(api.admin, "order-4711")
                )
                for n in range(8)
            )
        )
    answers = {r.content for r in responses if r.status_code == 201}
    refusals = Counter(r.json()["code"] for r in responses if r.status_code != 201)

    assert len(answers) == 1, "every answer is the one batch's"
    ISSUED_KEYS.update(k["key"] for k in json.loads(answers.pop())["keys"])
    assert set(refusals) <= {"idempotency_key_in_flight"}
    assert await _keys_issued(api) == 2000
