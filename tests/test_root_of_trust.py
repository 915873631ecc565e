"""A Timex build pins one root certificate; every support certificate carries its signing key's certificate by that
root (`x5c`), so keys rotate, and are revoked, without a new build. A rotation publishes the new key before it
signs: no certificate is ever signed by a key that a JWKS fetched at the same moment, or up to its `max-age`
before, lacks."""

import asyncio
import base64
import json
import os
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st
from jose import jwt
from sqlalchemy import text

from service import signing_keys, verification
from service.certificates import generate_private_key, kid_of, public_key_of
from service.http.routes.certificates import REVOCATION_LIST_PATH
from service.settings import Settings
from service.trust import Root, configured_root
from tests.api import Api
from tests.conftest import make_settings, service
from tests.servers import SERVER_LOGS, running_server
from tests.test_api_certificates import verify as verify_with_jwks

pytestmark = pytest.mark.anyio

VECTORS = Path(__file__).resolve().parent.parent / "docs" / "certificate-vectors"


def _cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
        timeout=60,
    )


def _init_root(directory: Path) -> tuple[Path, Path]:
    made = _cli({}, "init-root", "--out", str(directory))
    assert made.returncode == 0, made.stderr
    return directory / "root.pem", directory / "root-key.pem"


@dataclass
class Fetched:
    sent: float
    received: float
    server: int
    body: str


async def _fetch(url: str, path: str, server: int) -> Fetched:
    """One request on a connection of its own."""
    sent = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get(path)
    response.raise_for_status()
    return Fetched(sent, time.monotonic(), server, response.text)


def _kid(certificate: str) -> str:
    return jwt.get_unverified_header(certificate)["kid"]


def _kids(jwks: Fetched) -> set[str]:
    return {key["kid"] for key in json.loads(jwks.body)["keys"]}


async def test_a_rotation_leaves_no_gap_between_two_server_processes(api: Api, tmp_path: Path) -> None:
    """The loop of the issue, its times scaled down (reload 1 s, max-age 1 s, so the new key signs 2 s after its
    publication): two server processes, a certificate from one and the JWKS from the other, each on a new
    connection, every 0.1 s from 1 s before a rotation to 4 s after it. Every certificate verifies against the JWKS
    fetched right after it, and its key is in every JWKS fetched up to max-age before it."""
    await api.installation("ACME")
    max_age = 1.0
    env = {
        **os.environ,
        "DATABASE_URL": api.settings.database_url,
        "SIGNING_KEYS_RELOAD_SECONDS": "1",
        "JWKS_MAX_AGE_SECONDS": str(int(max_age)),
        "DEV_ROOT_DIR": str(tmp_path / "dev-root"),
    }
    certificates: list[Fetched] = []
    key_sets: list[Fetched] = []
    with running_server(env) as first, running_server(env) as second:
        servers = [first, second]
        rotated: list[subprocess.CompletedProcess] = []
        rotation = threading.Thread(target=lambda: rotated.append(_cli(env, "rotate-signing-key")))
        started = time.monotonic()
        after_rotation: float | None = None
        n = 0
        while after_rotation is None or time.monotonic() < after_rotation + 4:
            if n == 10:
                rotation.start()
            if after_rotation is None and rotated:
                after_rotation = time.monotonic()
            certificates.append(await _fetch(servers[n % 2], "/v1/installations/ACME/support", n % 2))
            key_sets.append(await _fetch(servers[(n + 1) % 2], "/.well-known/jwks.json", (n + 1) % 2))
            n += 1
            await asyncio.sleep(max(0.0, started + n * 0.1 - time.monotonic()))
        rotation.join()
    assert rotated[0].returncode == 0, rotated[0].stderr
    new_kid = json.loads(rotated[0].stdout)["signing"]

    for certificate, right_after in zip(certificates, key_sets, strict=True):
        token = json.loads(certificate.body)["certificate"]
        assert verify_with_jwks(json.loads(right_after.body), token)["sub"] == "ACME"
        earlier = [k for k in key_sets if k.sent >= certificate.received - max_age and k.received <= certificate.sent]
        assert all(_kid(token) in _kids(key_set) for key_set in earlier)
    assert all(new_kid in log for log in SERVER_LOGS[-2:]), "each process says when it reads a new key set"
    signed_by_new = [c for c in certificates if _kid(json.loads(c.body)["certificate"]) == new_kid]
    assert {c.server for c in signed_by_new} == {0, 1}, "both processes came to sign with the new key"
    first_published = min(k.received for k in key_sets if new_kid in _kids(k))
    assert first_published < min(c.sent for c in signed_by_new), "published before it signed"


def _check_chain_with_cryptography(token: str, root_pem: Path) -> dict:
    """What a Timex developer's own code does, with the `cryptography` package and no service code: the x5c chain
    to the pinned root, then the ES256 signature with the certified key."""
    root = x509.load_pem_x509_certificate(root_pem.read_bytes())
    header_segment, claims_segment, signature_segment = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_segment + "=" * (-len(header_segment) % 4)))
    key_certificate = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    key_certificate.verify_directly_issued_by(root)
    assert not key_certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    signature = base64.urlsafe_b64decode(signature_segment + "=" * (-len(signature_segment) % 4))
    public_key = key_certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(
        encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")),
        f"{header_segment}.{claims_segment}".encode(),
        ec.ECDSA(hashes.SHA256()),
    )
    return json.loads(base64.urlsafe_b64decode(claims_segment + "=" * (-len(claims_segment) % 4)))


async def test_a_certificate_issued_after_three_rotations_verifies_with_the_root_alone(
    database_url: str, tmp_path: Path
) -> None:
    root_pem, root_key = _init_root(tmp_path / "root")
    settings = make_settings(
        database_url, root_certificate=str(root_pem), signing_keys_reload_seconds=1, jwks_max_age_seconds=0
    )
    env = {
        "DATABASE_URL": database_url,
        "ROOT_CERTIFICATE": str(root_pem),
        "SIGNING_KEYS_RELOAD_SECONDS": "1",
        "JWKS_MAX_AGE_SECONDS": "0",
    }
    async with service(settings) as api:
        await api.installation("ACME")
        refused = await api.get("/v1/installations/ACME/support")  # no key yet: the service holds no root key
        no_revocation_list = await api.get(REVOCATION_LIST_PATH)
        signed = []
        for _ in range(4):  # the first key, then three rotations
            rotated = _cli(env, "rotate-signing-key", "--root-key", str(root_key))
            assert rotated.returncode == 0, rotated.stderr
            await asyncio.sleep(settings.signing_keys_reload_seconds + 0.2)  # it signs once every process has it
            signed.append((await api.get("/v1/installations/ACME/support")).json()["certificate"])
        revocation_list = await api.get(REVOCATION_LIST_PATH)

    assert (refused.status_code, refused.json()["code"]) == (503, "unavailable")
    assert (no_revocation_list.status_code, no_revocation_list.json()["code"]) == (404, "revocation_list_not_found")
    root = x509.load_pem_x509_certificate(root_pem.read_bytes())
    assert x509.load_der_x509_crl(revocation_list.content).is_signature_valid(root.public_key())  # type: ignore[arg-type]
    assert len({_kid(token) for token in signed}) == 4
    (tmp_path / "certificate.jwt").write_text(signed[-1])
    verified = _cli(
        {}, "verify-certificate", str(tmp_path / "certificate.jwt"), "--root", str(root_pem), "--installation", "acme"
    )
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["sub"] == "ACME"
    assert [_check_chain_with_cryptography(token, root_pem)["sub"] for token in signed] == ["ACME"] * 4


async def test_production_refuses_to_sign_with_a_key_the_root_did_not_certify(
    database_url: str, tmp_path: Path
) -> None:
    """A key certified by another root (here a development root), then one with no certificate at all: the JWKS
    shows it without `x5c`, and nothing is signed with it."""
    root_pem, _ = _init_root(tmp_path / "root")
    production = make_settings(
        database_url,
        environment="production",
        root_certificate=str(root_pem),
        jwt_secret="j" * 32,
        key_hash_secret="k" * 32,
        certificate_key_secret="c" * 32,
    )
    async with service(production) as api:
        await api.installation("ACME")
        other_root = configured_root(None, tmp_path / "dev-root", api.clock.now())
        await signing_keys.rotate(
            driver=api.driver,
            secret=production.certificate_key_secret,
            root=other_root,
            timing=signing_keys.Timing.of(production),
            clock=api.clock,
            immediately=True,
        )
        by_another_root = await api.get("/v1/installations/ACME/support")
        async with api.engine.begin() as connection:
            await connection.execute(text("UPDATE signing_keys SET certificate = NULL"))
        async with Api.started(production, api.engine, today=api.clock.today()) as restarted:
            uncertified = await restarted.get("/v1/installations/ACME/support")
            jwks = (await restarted.get("/.well-known/jwks.json")).json()
            activation = await restarted.activate("ACME", await restarted.keys(1))
            installation = (await restarted.get("/v1/installations/ACME", headers=restarted.admin)).json()

    for refused in (by_another_root, uncertified, activation):
        assert (refused.status_code, refused.json()["code"]) == (503, "unavailable")
    assert installation["activations"] == []  # refused before anything was written
    assert [key["x5c"] for key in jwks["keys"]] == [[]]


async def test_a_key_given_in_the_settings_signs_with_its_certificate_by_the_root(
    database_url: str, tmp_path: Path
) -> None:
    """CERTIFICATE_PRIVATE_KEY with CERTIFICATE_CHAIN (its certificate, as a root's owner makes it)."""
    root_pem, root_key = _init_root(tmp_path / "root")
    root = Root(x509.load_pem_x509_certificate(root_pem.read_bytes())).with_key(root_key.read_bytes())
    key = generate_private_key()
    now = datetime.now(UTC)
    certificate = root.certify(public_key_of(key), kid_of(key), now, now + timedelta(days=400))
    chain = x509.load_der_x509_certificate(certificate).public_bytes(serialization.Encoding.PEM).decode()
    settings = make_settings(
        database_url, root_certificate=root_pem.read_text(), certificate_private_key=key, certificate_chain=chain
    )
    async with service(settings) as api:
        await api.installation("ACME")
        token = (await api.get("/v1/installations/ACME/support")).json()["certificate"]

    assert _kid(token) == kid_of(key)
    assert _check_chain_with_cryptography(token, root_pem)["sub"] == "ACME"


def test_production_will_not_start_without_a_root_certificate() -> None:
    secrets = {"jwt_secret": "j" * 32, "key_hash_secret": "k" * 32, "certificate_key_secret": "c" * 32}
    settings = Settings(_env_file=None, environment="production", database_url="postgresql://db/x", **secrets)

    with pytest.raises(RuntimeError, match="ROOT_CERTIFICATE"):
        settings.check_production()


async def test_the_quick_start_makes_a_development_root_and_says_so(api: Api, tmp_path: Path) -> None:
    await api.installation("ACME")
    env = {**os.environ, "DATABASE_URL": api.settings.database_url}
    env.pop("DEV_ROOT_DIR", None)

    with running_server(env, cwd=tmp_path) as url:
        certificate = httpx.get(f"{url}/v1/installations/ACME/support").json()["certificate"]
    log = SERVER_LOGS[-1]

    root = tmp_path / "timex-data" / "dev-root"
    assert "development root" in log and str(Path("timex-data/dev-root/root.pem")) in log
    assert stat.S_IMODE((root / "root-key.pem").stat().st_mode) == 0o600
    assert _check_chain_with_cryptography(certificate, root / "root.pem")["sub"] == "ACME"


async def test_a_revoked_key_leaves_the_jwks_and_its_certificates_are_rejected(
    database_url: str, tmp_path: Path
) -> None:
    """Revoking the key that signs: a new one signs at once, the old one is published no more, and the root-signed
    list served at its fixed path (the one the command wrote) makes the reference verifier reject its certificates."""
    dev_root = tmp_path / "dev-root"
    settings = make_settings(database_url, dev_root_dir=dev_root, signing_keys_reload_seconds=1)
    env = {"DATABASE_URL": database_url, "DEV_ROOT_DIR": str(dev_root)}
    async with service(settings) as api:
        await api.installation("ACME")
        before = (await api.get("/v1/installations/ACME/support")).json()["certificate"]
        # A key id may begin with "-" (base64url): after "--", it is never read as an option.
        revoked = _cli(env, "revoke-signing-key", "--out", str(tmp_path / "revoked.crl"), "--", _kid(before))
        assert revoked.returncode == 0, revoked.stderr
        await asyncio.sleep(settings.signing_keys_reload_seconds + 0.2)
        after = (await api.get("/v1/installations/ACME/support")).json()["certificate"]
        jwks = (await api.get("/.well-known/jwks.json")).json()
        served = await api.get(REVOCATION_LIST_PATH)

    assert json.loads(revoked.stdout)["signing"] == _kid(after) != _kid(before)
    assert [key["kid"] for key in jwks["keys"]] == [_kid(after)]
    assert served.headers["content-type"] == "application/pkix-crl"
    assert served.content == (tmp_path / "revoked.crl").read_bytes()
    root = x509.load_pem_x509_certificate((dev_root / "root.pem").read_bytes())
    crl = x509.load_der_x509_crl(served.content)
    now = datetime.now(UTC)
    with pytest.raises(verification.Rejected) as rejected:
        verification.verify(before, root=root, on=now, revocation_list=crl)
    assert rejected.value.reason == "key_revoked"
    assert verification.verify(after, root=root, on=now, revocation_list=crl)["sub"] == "ACME"


async def test_a_key_revoked_since_an_instant_keeps_what_it_signed_before(database_url: str, tmp_path: Path) -> None:
    dev_root = tmp_path / "dev-root"
    settings = make_settings(database_url, dev_root_dir=dev_root)
    env = {"DATABASE_URL": database_url, "DEV_ROOT_DIR": str(dev_root)}
    async with service(settings) as api:
        await api.installation("ACME")
        before = (await api.get("/v1/installations/ACME/support")).json()["certificate"]
        since = datetime.now(UTC) + timedelta(seconds=2)
        revoked = _cli(env, "revoke-signing-key", "--since", since.isoformat(), "--", _kid(before))
        served = await api.get(REVOCATION_LIST_PATH)

    assert revoked.returncode == 0, revoked.stderr
    root = x509.load_pem_x509_certificate((dev_root / "root.pem").read_bytes())
    crl = x509.load_der_x509_crl(served.content)
    [entry] = list(crl)
    assert entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc == since.replace(
        microsecond=0
    )
    assert verification.verify(before, root=root, on=since, revocation_list=crl)["sub"] == "ACME"


async def test_a_rotation_under_way_is_not_rotated_again_except_in_an_emergency(
    database_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "DEV_ROOT_DIR": str(tmp_path / "dev-root")}
    settings = make_settings(database_url, dev_root_dir=env["DEV_ROOT_DIR"])
    async with service(settings) as api:
        await api.get("/.well-known/jwks.json")  # the first key
        scheduled = _cli(env, "rotate-signing-key")
        again = _cli(env, "rotate-signing-key")
        emergency = _cli(env, "rotate-signing-key", "--now")

    assert scheduled.returncode == 0, scheduled.stderr
    assert again.returncode == 1 and json.loads(scheduled.stdout)["signing"] in again.stderr
    assert emergency.returncode == 0 and "emergency" in emergency.stderr


async def test_a_rotation_stopped_before_it_scheduled_its_key_is_finished_by_the_next(
    database_url: str, tmp_path: Path
) -> None:
    """The key is published in one transaction and scheduled in the next: one left unscheduled (the command killed
    in between, over a minute ago) never signs, and the next rotation schedules it rather than publish another."""
    env = {"DATABASE_URL": database_url, "DEV_ROOT_DIR": str(tmp_path / "dev-root")}
    settings = make_settings(database_url, dev_root_dir=env["DEV_ROOT_DIR"])
    async with service(settings) as api:
        await api.get("/.well-known/jwks.json")  # the first key
        stopped = json.loads(_cli(env, "rotate-signing-key").stdout)["signing"]
        async with api.engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE signing_keys SET signs_from = NULL, created_at = created_at - interval '2 minutes' "
                    "WHERE kid = :kid"
                ),
                {"kid": stopped},
            )
        finished = _cli(env, "rotate-signing-key")
        async with api.engine.connect() as connection:
            keys = (
                await connection.execute(text("SELECT kid, signs_from FROM signing_keys ORDER BY generation"))
            ).all()

    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["signing"] == stopped
    assert len(keys) == 2 and keys[-1].kid == stopped and keys[-1].signs_from is not None


def test_init_root_makes_a_root_for_certifying_signing_keys_only_and_never_overwrites_it(tmp_path: Path) -> None:
    root_pem, root_key = _init_root(tmp_path / "root")
    key_before = root_key.read_bytes()
    again = _cli({}, "init-root", "--out", str(tmp_path / "root"))

    root = x509.load_pem_x509_certificate(root_pem.read_bytes())
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey) and root.public_key().curve.key_size >= 256
    assert (root.not_valid_after_utc - root.not_valid_before_utc).days >= 365 * 20
    assert stat.S_IMODE(root_key.stat().st_mode) == 0o600
    assert again.returncode == 1 and root_key.read_bytes() == key_before


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: base64.urlsafe_b64encode(b).decode()))
def test_the_reference_verifier_refuses_hostile_input_with_a_reason(token: str) -> None:
    root = x509.load_pem_x509_certificate((VECTORS / "root.pem").read_bytes())
    good = (VECTORS / "good.jwt").read_text().strip()
    for candidate in (token, f"{token}.{token}.{token}", good[: len(token)], good.replace(good[40:41], token[:1])):
        try:
            verification.verify(candidate, root=root, on=datetime(2026, 12, 10, tzinfo=UTC))
        except verification.Rejected as rejected:
            assert rejected.reason in {"malformed", "no_chain", "untrusted_key", "bad_signature"}


async def test_rotations_at_once_publish_one_new_key(api: Api) -> None:
    """Three rotations at once, after the first key: one publishes its key; the others, made again after losing,
    find it under way and are refused."""
    await api.get("/.well-known/jwks.json")  # the first key
    root = configured_root(None, api.settings.dev_root_dir, api.clock.now())

    outcomes = await asyncio.gather(
        *(
            signing_keys.rotate(
                driver=api.driver,
                secret=api.settings.certificate_key_secret,
                root=root,
                timing=signing_keys.Timing.of(api.settings),
                clock=api.clock,
                immediately=False,
            )
            for _ in range(3)
        ),
        return_exceptions=True,
    )

    [rotation] = [outcome for outcome in outcomes if isinstance(outcome, signing_keys.Rotation)]
    assert [type(outcome) for outcome in outcomes if outcome is not rotation] == [signing_keys.RotationUnderWay] * 2
    async with api.engine.connect() as connection:
        kids = (await connection.execute(text("SELECT kid FROM signing_keys ORDER BY generation"))).scalars().all()
    assert len(kids) == 2 and kids[-1] == rotation.signing


async def test_a_key_signs_for_its_period_only_and_the_log_says_to_rotate_before(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its certificate covers a signing period and a certificate's lifetime after: past the period nothing is
    signed (a certificate would outlive the key's certificate), and from a lifetime before, the log asks for a
    rotation."""
    root_pem, root_key = _init_root(tmp_path / "root")
    settings = make_settings(
        database_url, root_certificate=str(root_pem), signing_key_period_days=1, signing_keys_reload_seconds=1
    )
    env = {"DATABASE_URL": database_url, "ROOT_CERTIFICATE": str(root_pem), "SIGNING_KEY_PERIOD_DAYS": "1"}
    assert _cli(env, "rotate-signing-key", "--root-key", str(root_key), "--now").returncode == 0
    async with service(settings) as api:
        await api.installation("ACME")
        within = await api.get("/v1/installations/ACME/support")
        api.shift_instants(timedelta(days=1, minutes=1))
        await asyncio.sleep(settings.signing_keys_reload_seconds + 0.1)
        past = await api.get("/v1/installations/ACME/support")

    assert within.status_code == 200
    assert "signs until" in caplog.text and "rotate it" in caplog.text
    assert (past.status_code, past.json()["code"]) == (503, "unavailable")


async def test_a_retired_key_stays_published_while_its_certificates_may_be_valid(
    database_url: str, tmp_path: Path
) -> None:
    """After an emergency rotation, the old key may still sign for up to the reload interval in a process that has
    not read the key set again: it stays in the JWKS for a certificate's lifetime after that, and no longer."""
    dev_root = tmp_path / "dev-root"
    settings = make_settings(database_url, dev_root_dir=dev_root, signing_keys_reload_seconds=1)
    timing = signing_keys.Timing.of(settings)
    async with service(settings) as api:
        old = _kid(await _support(api, "ACME"))
        await signing_keys.rotate(
            driver=api.driver,
            secret=settings.certificate_key_secret,
            root=configured_root(None, dev_root, api.clock.now()),
            timing=timing,
            clock=api.clock,
            immediately=True,
        )
        published = []
        for shift in (timing.retained - timedelta(minutes=1), timing.retained + timedelta(minutes=1)):
            api.shift_instants(shift)
            await asyncio.sleep(settings.signing_keys_reload_seconds + 0.1)
            published.append({key["kid"] for key in (await api.get("/.well-known/jwks.json")).json()["keys"]})

    assert old in published[0]
    assert old not in published[1] and len(published[1]) == 1


async def _support(api: Api, code: str) -> str:
    await api.installation(code)
    return (await api.get(f"/v1/installations/{code}/support")).json()["certificate"]
