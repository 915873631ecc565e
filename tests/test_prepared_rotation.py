"""A rotation without the root's key on the service: the service prepares a new key and its certificate signing
request, the root's holder certifies it offline (`certify-signing-key`, no database), and the service publishes the
key with that certificate by the rules of `rotate-signing-key`. Until then nothing publishes or signs with it; a
certificate of another root, of another key, or too short is refused, and so is a request that was altered."""

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text

from service import errors, signing_keys, trust, verification
from service.certificates import generate_private_key
from service.http.routes.certificates import REVOCATION_LIST_PATH
from service.settings import Settings
from service.trust import Root
from tests.api import Api
from tests.conftest import make_settings, service
from tests.test_root_of_trust import _check_chain_with_cryptography, _cli, _init_root, _kid

pytestmark = pytest.mark.anyio


def _production(database_url: str, root_pem: Path) -> Settings:
    """A service that holds the root's certificate only, its intervals at 1 s: a new key signs 2 s after it is
    published."""
    return make_settings(
        database_url, root_certificate=str(root_pem), signing_keys_reload_seconds=1, jwks_max_age_seconds=1
    )


def _rotate(database_url: str, root_pem: Path, root_key: Path, *flags: str) -> subprocess.CompletedProcess:
    """`rotate-signing-key` where the root's key is, with the service's database (and the default intervals)."""
    env = {"DATABASE_URL": database_url, "ROOT_CERTIFICATE": str(root_pem)}
    rotated = _cli(env, "rotate-signing-key", "--root-key", str(root_key), *flags)
    assert rotated.returncode == 0, rotated.stderr
    return rotated


@pytest.fixture
def root(database_url: str, tmp_path: Path) -> tuple[Path, Path]:
    """The root's two files, and a first signing key it certified, signing."""
    root_pem, root_key = _init_root(tmp_path / "root")
    _rotate(database_url, root_pem, root_key, "--now")
    return root_pem, root_key


def _certify(request_pem: str, root_pem: Path, root_key: Path, folder: Path) -> tuple[int, str, str]:
    """`certify-signing-key` on the root holder's machine: no database, the root's two files, the service's
    intervals."""
    (folder / "signing-key.csr").write_text(request_pem)
    done = _cli(
        {
            "ROOT_CERTIFICATE": str(root_pem),
            "DATABASE_URL": "postgresql://nowhere.invalid/none",
            "SIGNING_KEYS_RELOAD_SECONDS": "1",
            "JWKS_MAX_AGE_SECONDS": "1",
        },
        "certify-signing-key",
        str(folder / "signing-key.csr"),
        "--root-key",
        str(root_key),
        "--out",
        str(folder / "signing-key.pem"),
    )
    certificate = (folder / "signing-key.pem").read_text() if done.returncode == 0 else ""
    return done.returncode, certificate, done.stderr


async def _publish(api: Api, root_pem: Path, kid: str, certificate: str, immediately: bool = False):
    settings = api.settings
    return await signing_keys.publish_prepared(
        driver=api.driver,
        secret=settings.certificate_key_secret,
        root=Root(trust.load_certificate(root_pem)),
        timing=signing_keys.Timing.of(settings),
        clock=api.clock,
        kid=kid,
        certificate=certificate,
        immediately=immediately,
    )


async def _prepare(api: Api) -> signing_keys.Prepared:
    return await signing_keys.prepare(
        driver=api.driver, secret=api.settings.certificate_key_secret, now=api.clock.now()
    )


async def _support(api: Api) -> str:
    answer = await api.get("/v1/installations/ACME/support")
    assert answer.status_code == 200, answer.text
    return answer.json()["certificate"]


async def _published_kids(api: Api) -> set[str]:
    return {key["kid"] for key in (await api.get("/.well-known/jwks.json")).json()["keys"]}


async def test_a_prepared_key_certified_offline_signs_after_the_usual_delay_and_verifies_with_the_root(
    database_url: str, root: tuple[Path, Path], tmp_path: Path
) -> None:
    root_pem, root_key = root
    settings = _production(database_url, root_pem)
    async with service(settings) as api:
        await api.installation("ACME")
        old = _kid(await _support(api))
        revocation_list = (await api.get(REVOCATION_LIST_PATH)).content

        prepared = await _prepare(api)
        again = await _prepare(api)
        await asyncio.sleep(settings.signing_keys_reload_seconds + 0.2)
        kid = prepared.key.kid
        while_pending = {
            "jwks": await _published_kids(api),
            "signed by": _kid(await _support(api)),
            "signing since": await signing_keys.signing_since(driver=api.driver, now=api.clock.now()),
            "revocation list": (await api.get(REVOCATION_LIST_PATH)).content,
        }
        refused_revocation = _cli(
            {"DATABASE_URL": database_url, "ROOT_CERTIFICATE": str(root_pem)},
            "revoke-signing-key",
            "--root-key",
            str(root_key),
            "--",
            kid,
        )

        status, certificate, said = _certify(prepared.key.request_pem, root_pem, root_key, tmp_path)
        assert status == 0, said
        certified_at = datetime.now(UTC)
        rotation = await _publish(api, root_pem, kid, certificate)
        published_at = datetime.now(UTC)
        left_pending = await signing_keys.pending(driver=api.driver)
        await asyncio.sleep(settings.signing_keys_reload_seconds + 0.2)
        before_it_signs = (await _published_kids(api), _kid(await _support(api)))
        await asyncio.sleep(max(0.0, (rotation.signs_from - datetime.now(UTC)).total_seconds()) + 1.2)
        api.stand_on(api.clock.today() + timedelta(days=1))  # a new business day: a certificate of its own
        after = await _support(api)

    assert prepared.made and not again.made and again.key.kid == kid
    assert kid != old and kid in said
    assert while_pending == {
        "jwks": {old},
        "signed by": old,
        "signing since": while_pending["signing since"],
        "revocation list": revocation_list,
    }
    assert while_pending["signing since"] is not None
    assert refused_revocation.returncode == 1 and "no unrevoked signing key" in refused_revocation.stderr

    assert rotation.signing == kid and left_pending is None
    timing = signing_keys.Timing.of(settings)
    assert published_at + timing.publication - timedelta(seconds=1) <= rotation.signs_from
    assert rotation.signs_from <= published_at + timing.publication + timedelta(seconds=1)
    assert before_it_signs == ({old, kid}, old), "published before it signs"
    assert _kid(after) == kid

    key_certificate = x509.load_pem_x509_certificate(certificate.encode())
    expected_end = certified_at + timing.publication + timing.period + timing.lifetime
    assert abs(key_certificate.not_valid_after_utc - expected_end) < timedelta(minutes=1)
    pinned = trust.load_certificate(root_pem)
    assert verification.verify(after, root=pinned, on=datetime.now(UTC), installation="ACME")["sub"] == "ACME"
    assert _check_chain_with_cryptography(after, root_pem)["sub"] == "ACME"
    (tmp_path / "certificate.jwt").write_text(after)
    verified = _cli({}, "verify-certificate", str(tmp_path / "certificate.jwt"), "--root", str(root_pem))
    assert verified.returncode == 0, verified.stderr


async def test_the_offline_certificate_has_the_profile_of_a_rotation_by_the_command_line(
    database_url: str, root: tuple[Path, Path], tmp_path: Path
) -> None:
    root_pem, root_key = root
    async with service(_production(database_url, root_pem)) as api:
        prepared = await _prepare(api)
        async with api.engine.connect() as connection:
            by_command_line = (await connection.execute(text("SELECT certificate FROM signing_keys"))).scalar_one()
    status, certificate, said = _certify(prepared.key.request_pem, root_pem, root_key, tmp_path)

    assert status == 0, said
    offline = x509.load_pem_x509_certificate(certificate.encode())
    rotated = x509.load_der_x509_certificate(by_command_line)
    assert offline.issuer == rotated.issuer
    assert offline.subject == x509.Name.from_rfc4514_string(f"CN={prepared.key.kid},O=Smartec")
    assert [(e.oid, e.critical) for e in offline.extensions] == [(e.oid, e.critical) for e in rotated.extensions]
    assert (
        offline.extensions.get_extension_for_class(x509.KeyUsage).value
        == rotated.extensions.get_extension_for_class(x509.KeyUsage).value
    )


async def test_an_altered_request_is_not_certified(tmp_path: Path) -> None:
    root_pem, root_key = _init_root(tmp_path / "root")
    request = trust.signing_request(generate_private_key())
    kid = x509.load_der_x509_csr(request).subject.rfc4514_string().split(",")[0].removeprefix("CN=")
    altered = request.replace(kid[:8].encode(), b"AAAAAAAA")  # another key's name, the key's signature kept
    pem = x509.load_der_x509_csr(altered).public_bytes(serialization.Encoding.PEM).decode()

    status, _, said = _certify(pem, root_pem, root_key, tmp_path)

    assert status == 1 and "signature does not verify" in said


@pytest.mark.parametrize("fault", ["another root", "another key", "expired", "too short", "not a certificate"])
async def test_a_certificate_the_service_would_not_sign_under_is_refused_and_the_key_stays_prepared(
    database_url: str, root: tuple[Path, Path], tmp_path: Path, fault: str
) -> None:
    root_pem, root_key = root
    settings = _production(database_url, root_pem)
    timing = signing_keys.Timing.of(settings)
    holder = Root(trust.load_certificate(root_pem)).with_key(root_key.read_bytes())
    async with service(settings) as api:
        prepared = (await _prepare(api)).key
        kid, request = prepared.kid, x509.load_der_x509_csr(prepared.request)
        now = datetime.now(UTC)
        if fault == "another root":
            other_pem, other_key = _init_root(tmp_path / "other-root")
            other = Root(trust.load_certificate(other_pem)).with_key(other_key.read_bytes())
            der = other.certify_request(request, *timing.validity(now, None))
        elif fault == "another key":
            another = x509.load_der_x509_csr(trust.signing_request(generate_private_key()))
            der = holder.certify_request(another, *timing.validity(now, None))
        elif fault == "expired":
            der = holder.certify_request(request, now - timedelta(days=400), now - timedelta(days=1))
        elif fault == "too short":  # a certificate signed at its first signature would outlive it
            der = holder.certify_request(request, now, now + timing.publication + timing.lifetime - timedelta(hours=1))
        else:
            der = b""
        pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode() if der else "hello"
        with pytest.raises(errors.SigningKeyCertificateRefused) as refused:
            await _publish(api, root_pem, kid, pem)
        still = await signing_keys.pending(driver=api.driver)
        jwks = await _published_kids(api)

    expected = {
        "another root": errors.CertificateNotByRoot,
        "another key": errors.CertificateForAnotherKey,
        "expired": errors.CertificateExpired,
        "too short": errors.CertificateExpired,
        "not a certificate": errors.CertificateUnreadable,
    }[fault]
    assert type(refused.value) is expected and refused.value.code == "signing_key_certificate_refused"
    assert still is not None and still.kid == kid and kid not in jwks


async def test_a_prepared_key_waits_for_the_rotation_under_way_unless_in_an_emergency(
    database_url: str, root: tuple[Path, Path], tmp_path: Path
) -> None:
    root_pem, root_key = root
    async with service(_production(database_url, root_pem)) as api:
        prepared = await _prepare(api)
        status, certificate, said = _certify(prepared.key.request_pem, root_pem, root_key, tmp_path)
        assert status == 0, said
        under_way = _rotate(database_url, root_pem, root_key)
        with pytest.raises(errors.RotationUnderWay) as refused:
            await _publish(api, root_pem, prepared.key.kid, certificate)
        emergency = await _publish(api, root_pem, prepared.key.kid, certificate, immediately=True)
        await asyncio.sleep(api.settings.signing_keys_reload_seconds + 0.2)
        await api.installation("ACME")
        signed_by = _kid(await _support(api))
        with pytest.raises(errors.SigningKeyNotPrepared):
            await _publish(api, root_pem, prepared.key.kid, certificate)

    assert json.loads(under_way.stdout)["signing"] in str(refused.value)
    assert emergency.signing == prepared.key.kid and signed_by == prepared.key.kid


async def test_a_discarded_key_is_gone_and_a_new_rotation_can_be_prepared(database_url: str, tmp_path: Path) -> None:
    root_pem, root_key = _init_root(tmp_path / "root")
    async with service(_production(database_url, root_pem)) as api:
        first = await _prepare(api)
        status, certificate, said = _certify(first.key.request_pem, root_pem, root_key, tmp_path)
        assert status == 0, said
        await signing_keys.discard(driver=api.driver, kid=first.key.kid)
        with pytest.raises(errors.SigningKeyNotPrepared):
            await signing_keys.discard(driver=api.driver, kid=first.key.kid)
        second = await _prepare(api)
        with pytest.raises(errors.SigningKeyNotPrepared):
            await _publish(api, root_pem, first.key.kid, certificate)
        with pytest.raises(errors.CertificateForAnotherKey):
            await _publish(api, root_pem, second.key.kid, certificate)

    assert second.made and second.key.kid != first.key.kid
