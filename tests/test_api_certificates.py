"""Signed support certificates: a Timex client checks its support end offline, with nothing but
the service's JWKS document, until the certificate expires. One key set per deployment, kept in the database:
every process signs with the same key, across restarts and rotations."""

import asyncio
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from unittest import mock
from zoneinfo import ZoneInfo

import httpx
import pytest
from jose import jwk, jwt

from service import signing_keys
from service.certificates import CertificateSigner, generate_private_key
from service.issued_certificates import IssuedCertificates
from service.trust import configured_root
from tests.api import Api
from tests.conftest import make_settings, service
from tests.roots import certified_key
from tests.servers import running_server

pytestmark = pytest.mark.anyio

LIFETIME = timedelta(days=30)
"""CERTIFICATE_LIFETIME_DAYS's default."""
MOSCOW = ZoneInfo("Europe/Moscow")
"""BUSINESS_TIMEZONE's default."""


def verify(jwks: dict, certificate: str) -> dict:
    """What a Timex client does offline: the key named by the certificate's `kid`, from a JWKS fetched earlier."""
    kid = jwt.get_unverified_header(certificate)["kid"]
    [public] = [key for key in jwks["keys"] if key["kid"] == kid]
    assert "d" not in public  # the private part never leaves the service
    return jwt.decode(certificate, jwk.construct(public), algorithms=["ES256"])


async def _verify_with_jwks_only(api: Api, certificate: str) -> dict:
    return verify((await api.get("/.well-known/jwks.json")).json(), certificate)


async def _support_certificate(api: Api, code: str = "ACME") -> str:
    return (await api.get(f"/v1/installations/{code}/support")).json()["certificate"]


async def test_the_support_state_carries_a_certificate_of_its_support_end(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-11-24")

    body = (await api.get("/v1/installations/ACME/support")).json()
    claims = await _verify_with_jwks_only(api, body["certificate"])

    assert (claims["sub"], claims["support_end"], claims["as_of"]) == ("ACME", "2026-11-24", "2026-11-24")
    assert claims["iss"] == api.settings.jwt_issuer
    assert claims["exp"] - claims["iat"] == LIFETIME.total_seconds()


async def test_an_activation_carries_a_certificate_of_the_new_support_end(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-11-24")
    [key] = await api.keys(1)
    api.stand_on(date(2026, 11, 20))

    body = (await api.activate("ACME", [key])).json()
    claims = await _verify_with_jwks_only(api, body["certificate"])

    assert (claims["sub"], claims["support_end"]) == ("ACME", body["support_end_after"])


async def test_reads_on_one_business_day_get_the_one_certificate_of_that_statement(api: Api) -> None:
    """Signed once per statement (installation, support end, business day, key): a second read that day
    answers the same bytes, later in the day too."""
    await api.installation("ACME")
    first = await _support_certificate(api)
    api.shift_instants(timedelta(hours=3))

    again = await _support_certificate(api)

    assert again == first
    assert verify((await api.get("/.well-known/jwks.json")).json(), again)["as_of"] == "2026-11-24"


async def test_a_new_support_end_and_the_next_business_day_each_get_a_certificate_of_their_own(api: Api) -> None:
    """An activation's certificate is its new statement's: the support state answers it for the rest of the day."""
    await api.installation("ACME", purchased_on="2025-11-24")
    [key] = await api.keys(1)
    before = await _support_certificate(api)

    activated = (await api.activate("ACME", [key])).json()
    after_activation = await _support_certificate(api)
    api.stand_on(date(2026, 11, 25))
    next_day = await _support_certificate(api)

    jwks = (await api.get("/.well-known/jwks.json")).json()
    assert after_activation == activated["certificate"]
    assert len({before, after_activation, next_day}) == 3
    assert verify(jwks, before)["support_end"] == "2026-11-24"
    assert verify(jwks, after_activation)["support_end"] == activated["support_end_after"]
    assert (verify(jwks, next_day)["support_end"], verify(jwks, next_day)["as_of"]) == (
        activated["support_end_after"],
        "2026-11-25",
    )


def _signer(key: str, certificate: bytes) -> CertificateSigner:
    return CertificateSigner(key, "timex-licensing", LIFETIME, [certificate], zone=MOSCOW)


def _signer_of_a_new_key(zone: ZoneInfo = MOSCOW) -> CertificateSigner:
    """A signer of its own key, without a certificate of it (none of the root's checks are at stake)."""
    return CertificateSigner(generate_private_key(), "timex-licensing", LIFETIME, chain=(), zone=zone)


def test_a_process_keeps_at_most_its_capacity_of_certificates_and_signs_one_forgotten_again_the_same() -> None:
    signer = _signer_of_a_new_key()
    issued = IssuedCertificates(capacity=2)
    day, now = date(2026, 11, 24), datetime(2026, 11, 24, 9, tzinfo=UTC)
    first = issued.certificate(signer, "A", day, day, now)
    kept = [issued.certificate(signer, code, day, day, now) for code in ("B", "C")]  # A is forgotten

    with mock.patch.object(signer, "certificate", wraps=signer.certificate) as signing:
        assert [issued.certificate(signer, code, day, day, now) for code in ("B", "C")] == kept
        assert signing.call_count == 0
        assert issued.certificate(signer, "A", day, day, now + timedelta(hours=5)) == first
        assert signing.call_count == 1


def test_one_statement_signed_by_two_processes_on_one_day_is_one_certificate() -> None:
    """RFC 6979 signatures and an `iat` fixed by the day: whichever process signs it, whenever that day."""
    certified_at = datetime(2026, 1, 10, 12, tzinfo=UTC)
    _, key, certificate_of_key = certified_key(certified_at, certified_at + LIFETIME * 20)
    one, other = _signer(key, certificate_of_key), _signer(key, certificate_of_key)
    day, end = date(2026, 11, 24), date(2027, 11, 24)
    morning, evening = datetime(2026, 11, 23, 21, 5, tzinfo=UTC), datetime(2026, 11, 24, 20, 55, tzinfo=UTC)

    certificate = one.certificate("ACME", end, day, morning)

    assert other.certificate("ACME", end, day, evening) == certificate
    assert one.certificate("ACME", end, day, evening + timedelta(minutes=10)) != certificate  # the next day's
    claims = jwt.decode(certificate, jwk.construct(one.public_jwk), algorithms=["ES256"], options={"verify_exp": False})
    assert (claims["sub"], claims["support_end"], claims["as_of"]) == ("ACME", "2027-11-24", "2026-11-24")


def test_a_certificate_is_issued_at_the_start_of_its_business_day_or_when_its_key_was_certified_if_later() -> None:
    certified_at = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    _, key, certificate_of_key = certified_key(certified_at, certified_at + LIFETIME * 20)
    signer = _signer(key, certificate_of_key)

    def issued_at(now: datetime) -> datetime:
        claims = jwt.get_unverified_claims(signer.certificate("ACME", date(2027, 11, 24), now.date(), now))
        assert claims["exp"] - claims["iat"] == LIFETIME.total_seconds()
        return datetime.fromtimestamp(claims["iat"], UTC)

    assert issued_at(datetime(2026, 11, 25, 8, tzinfo=UTC)) == datetime(2026, 11, 24, 21, tzinfo=UTC)  # 0:00 Moscow
    assert issued_at(datetime(2026, 11, 24, 12, tzinfo=UTC)) == certified_at  # a verifier refuses an `iat` before it


def test_a_certificate_is_issued_at_the_start_of_its_day_where_a_clock_goes_back_over_midnight() -> None:
    """St. John's, 2010-11-07: at 00:01 the clock went back to 23:01 of the 6th, so the 6th came back for an hour
    after the 7th had begun. A signer that has signed on the 7th still dates that hour's certificates by the 6th."""
    newfoundland = ZoneInfo("America/St_Johns")
    signer = _signer_of_a_new_key(newfoundland)
    seventh_begun = datetime(2010, 11, 7, 2, 30, 30, tzinfo=UTC)  # 00:00:30 on the 7th, daylight time
    sixth_again = datetime(2010, 11, 7, 2, 45, tzinfo=UTC)  # 23:15 on the 6th, standard time

    assert signer.issued_at(seventh_begun) == datetime(2010, 11, 7, tzinfo=newfoundland)
    assert signer.issued_at(sixth_again) == datetime(2010, 11, 6, tzinfo=newfoundland)
    assert signer.issued_at(seventh_begun + timedelta(hours=2)) == datetime(2010, 11, 7, tzinfo=newfoundland)


async def test_certificates_asked_for_in_one_turn_are_signed_together_each_of_its_own_statement() -> None:
    signer = _signer_of_a_new_key()
    day, now = date(2026, 11, 24), datetime(2026, 11, 24, 9, tzinfo=UTC)
    codes = ("A", "B", "C")

    with mock.patch.object(signer, "certificate", wraps=signer.certificate) as signing:
        asked = [asyncio.create_task(signer.certificate_in_turn(code, day, day, now)) for code in codes]
        await asyncio.sleep(0)  # every one asked for: none signed yet
        assert signing.call_count == 0
        certificates = await asyncio.gather(*asked)
        assert signing.call_count == len(codes)

    assert certificates == [signer.certificate(code, day, day, now) for code in codes]


async def test_a_request_given_up_while_its_certificate_waits_leaves_the_others_theirs() -> None:
    signer = _signer_of_a_new_key()
    day, now = date(2026, 11, 24), datetime(2026, 11, 24, 9, tzinfo=UTC)
    real = signer.certificate

    def refusing(code: str, support_end: date, as_of: date, now: datetime) -> str:
        if code == "REFUSED":
            raise ValueError("cannot sign")
        return real(code, support_end, as_of, now)

    with mock.patch.object(signer, "certificate", side_effect=refusing) as signing:
        asked = {code: asyncio.create_task(signer.certificate_in_turn(code, day, day, now)) for code in "ABC"}
        refused = asyncio.create_task(signer.certificate_in_turn("REFUSED", day, day, now))
        await asyncio.sleep(0)
        asked["B"].cancel()
        assert [await asked[code] for code in "AC"] == [real(code, day, day, now) for code in "AC"]
        with pytest.raises(ValueError, match="cannot sign"):
            await refused
        assert asked["B"].cancelled()
        assert signing.call_count == 3  # not the one given up

    assert await signer.certificate_in_turn("D", day, day, now) == real("D", day, day, now)  # the next turn's


def test_a_certificate_asked_for_in_a_loop_closed_before_signing_does_not_hold_up_the_next_loops() -> None:
    signer = _signer_of_a_new_key()
    day, now = date(2026, 11, 24), datetime(2026, 11, 24, 9, tzinfo=UTC)
    closed = asyncio.new_event_loop()
    abandoned = closed.create_task(signer.certificate_in_turn("A", day, day, now))
    closed.call_soon(closed.stop)
    closed.run_forever()  # one turn: asked for, its signing still to come at the turn's end
    assert not abandoned.done()
    closed.close()

    async def next_loops() -> str:
        async with asyncio.timeout(5):
            return await signer.certificate_in_turn("A", day, day, now)

    assert asyncio.run(next_loops()) == signer.certificate("A", day, day, now)


async def test_a_tampered_certificate_does_not_verify(api: Api) -> None:
    await api.installation("ACME")
    certificate = (await api.get("/v1/installations/ACME/support")).json()["certificate"]
    header, _, signature = certificate.split(".")
    forged = jwt.encode({"sub": "ACME", "support_end": "2099-12-31"}, "x", algorithm="HS256").split(".")[1]

    with pytest.raises(jwt.JWTError):
        await _verify_with_jwks_only(api, f"{header}.{forged}.{signature}")


async def test_the_key_set_may_be_cached_for_jwks_max_age(api: Api) -> None:
    response = await api.get("/.well-known/jwks.json")

    assert response.headers["cache-control"] == f"public, max-age={api.settings.jwks_max_age_seconds}"
    [key] = response.json()["keys"]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    assert len(key["x5c"]) == 1  # its certificate by the root


async def test_an_expired_certificate_does_not_verify(api: Api) -> None:
    await api.installation("ACME")
    api.shift_instants(-(LIFETIME + timedelta(minutes=1)))
    certificate = await _support_certificate(api)
    api.shift_instants(timedelta())

    with pytest.raises(jwt.ExpiredSignatureError):
        await _verify_with_jwks_only(api, certificate)


async def test_a_replay_answers_the_first_certificate_while_it_is_valid_and_a_fresh_one_after(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-11-24")
    [key] = await api.keys(1)
    api.shift_instants(-(LIFETIME + timedelta(days=1)))  # activated 31 days ago
    first = (await api.activate("ACME", [key])).json()
    replayed_while_valid = (await api.activate("ACME", [key])).json()
    api.shift_instants(timedelta())

    replayed = await api.activate("ACME", [key])

    assert replayed_while_valid["certificate"] == first["certificate"]
    with pytest.raises(jwt.ExpiredSignatureError):
        await _verify_with_jwks_only(api, first["certificate"])
    assert replayed.status_code == 200
    claims = await _verify_with_jwks_only(api, replayed.json()["certificate"])
    assert (claims["support_end"], claims["as_of"]) == (first["support_end_after"], first["activated_on"])
    assert {k: v for k, v in replayed.json().items() if k != "certificate"} == {
        k: v for k, v in first.items() if k != "certificate"
    }


def _rotate(database_url: str) -> None:
    """`timex-licensing rotate-signing-key --now`, as ops would run it, the new key signing at once."""
    rotated = subprocess.run(
        [sys.executable, "-m", "service.cli", "rotate-signing-key", "--now"],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url},
        timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr


async def test_a_certificate_verifies_after_a_restart_and_an_emergency_rotation_until_it_expires(api: Api) -> None:
    await api.installation("ACME")
    signed_before = await _support_certificate(api)

    async with Api.started(api.settings, api.engine, today=date(2026, 11, 24)) as restarted:
        jwks_after_restart = (await restarted.get("/.well-known/jwks.json")).json()
        _rotate(api.settings.database_url)
    async with Api.started(api.settings, api.engine, today=date(2026, 11, 24)) as rotated:
        jwks = (await rotated.get("/.well-known/jwks.json")).json()
        signed_after = await _support_certificate(rotated)

    assert verify(jwks_after_restart, signed_before)["sub"] == "ACME"
    assert verify(jwks, signed_before)["sub"] == "ACME"
    assert verify(jwks, signed_after)["sub"] == "ACME"
    before_kid, after_kid = (jwt.get_unverified_header(c)["kid"] for c in (signed_before, signed_after))
    assert before_kid != after_kid
    assert [key["kid"] for key in jwks["keys"]] == [after_kid, before_kid]  # the signing key first


async def test_a_running_process_signs_with_an_emergency_rotations_key_once_it_reloads_the_key_set(
    database_url: str,
) -> None:
    settings = make_settings(database_url, signing_keys_reload_seconds=1)
    async with service(settings) as api:
        await api.installation("ACME")
        old_kid = jwt.get_unverified_header(await _support_certificate(api))["kid"]
        rotation = await signing_keys.rotate(
            driver=api.driver,
            secret=settings.certificate_key_secret,
            root=configured_root(None, settings.dev_root_dir, api.clock.now()),
            timing=signing_keys.Timing.of(settings),
            clock=api.clock,
            immediately=True,
        )
        assert rotation.signing != old_kid

        await asyncio.sleep(settings.signing_keys_reload_seconds)
        certificate = await _support_certificate(api)

        assert jwt.get_unverified_header(certificate)["kid"] == rotation.signing
        assert verify((await api.get("/.well-known/jwks.json")).json(), certificate)["sub"] == "ACME"


async def test_every_worker_of_a_server_signs_with_the_one_key_set(api: Api) -> None:
    """Two worker processes, started at once on an empty key table: one key is made, and 30 certificates, from
    whichever worker, all verify against one JWKS fetch, and are one certificate."""
    await api.installation("ACME")
    env = {**os.environ, "DATABASE_URL": api.settings.database_url, "WORKERS": "2"}

    with running_server(env) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            answers = await asyncio.gather(*(client.get("/v1/installations/ACME/support") for _ in range(30)))
            jwks = (await client.get("/.well-known/jwks.json")).json()

    assert len(jwks["keys"]) == 1
    assert [verify(jwks, answer.json()["certificate"])["sub"] for answer in answers] == ["ACME"] * 30
    assert len({answer.json()["certificate"] for answer in answers}) == 1


async def test_two_servers_on_one_database_answer_one_certificate_for_one_statement(api: Api) -> None:
    """What a client or a cache compares: the same installation read from either instance, and after an activation
    on one, from the other."""
    await api.installation("ACME")
    [key] = await api.keys(1)
    env = {**os.environ, "DATABASE_URL": api.settings.database_url}

    with running_server(env) as one, running_server(env) as other:
        async with httpx.AsyncClient(timeout=30) as client:
            read = [(await client.get(f"{url}/v1/installations/ACME/support")).json() for url in (one, other)]
            activation = {"installation": "ACME", "keys": [key]}
            activated = (await client.post(f"{one}/v1/activations", json=activation)).json()
            after = [(await client.get(f"{url}/v1/installations/ACME/support")).json() for url in (other, one)]

    assert read[0]["certificate"] == read[1]["certificate"]
    assert after[0]["certificate"] == after[1]["certificate"] == activated["certificate"] != read[0]["certificate"]


async def test_processes_starting_at_once_on_an_empty_key_table_make_one_signing_key(api: Api) -> None:
    """Each reads an empty table and makes a key; one is stored, and every one signs with that one."""
    key_sets = await asyncio.gather(
        *(
            signing_keys.load(
                driver=api.driver,
                secret=api.settings.certificate_key_secret,
                issuer=api.settings.jwt_issuer,
                timing=signing_keys.Timing.of(api.settings),
                root=configured_root(None, api.settings.dev_root_dir, api.clock.now()),
                now=api.clock.now(),
            )
            for _ in range(4)
        )
    )

    assert len({key_set.signer(api.clock.now()).kid for key_set in key_sets}) == 1
    assert [len(key_set.jwks["keys"]) for key_set in key_sets] == [1] * 4
