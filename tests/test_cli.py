"""The `timex-licensing` command: tokens, migrations, and a real `serve` on the embedded database."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from service.auth import TokenSettings, issue_token, verify_token
from service.cli import main
from service.clock import Clock
from service.keyformat import generate
from service.settings import DEV_SECRET, Settings
from tests.servers import running_server


def test_token_prints_a_signed_admin_token(capsys) -> None:
    main(["token", "--role", "admin", "--subject", "ops"])

    principal = verify_token(TokenSettings.of(Settings(_env_file=None)), capsys.readouterr().out.strip())

    assert (principal.role, principal.subject) == ("admin", "ops")


def test_serve_migrates_the_embedded_database_and_serves_the_docs(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'timex.db'}"}
    with running_server(env, cwd=tmp_path, ready_path="/docs") as url:
        docs = httpx.get(f"{url}/docs")
        support = httpx.get(f"{url}/v1/installations/NONE/support")

    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert support.json()["code"] == "installation_not_found"


def test_serve_believes_x_forwarded_for_only_from_trusted_proxies(tmp_path: Path) -> None:
    """No proxy is trusted by default: a local caller naming other addresses is still one caller, and its
    failed activations count against it."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'timex.db'}", "ACTIVATION_FAILURE_LIMIT": "2"}
    settings = Settings(_env_file=None)
    admin = {
        "Authorization": "Bearer "
        + issue_token(TokenSettings.of(settings), "admin", "ops", Clock(settings.zone).now(), timedelta(minutes=5))
    }
    with running_server(env, cwd=tmp_path) as url:
        for n in range(3):
            httpx.post(
                f"{url}/v1/installations", json={"code": f"INST-{n}", "purchased_on": "2026-11-01"}, headers=admin
            ).raise_for_status()
        statuses = [
            httpx.post(
                f"{url}/v1/activations",
                json={"installation": f"INST-{n}", "keys": [generate()]},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            ).status_code
            for n in range(3)
        ]

    assert statuses == [404, 404, 429]


def _certified_key() -> dict[str, str]:
    """A root of trust, and a signing key with its certificate by that root: the settings that give them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from service.certificates import generate_private_key, kid_of, public_key_of
    from service.trust import Root, make_root

    now = Clock(Settings(_env_file=None).zone).now()
    root_key, root_pem = make_root("test root", now)
    root = Root(x509.load_pem_x509_certificate(root_pem)).with_key(root_key)
    key = generate_private_key()
    der = root.certify(public_key_of(key), kid_of(key), now, now + timedelta(days=400))
    chain = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()
    return {"root_certificate": root_pem.decode(), "certificate_private_key": key, "certificate_chain": chain}


def test_production_refuses_to_start_with_a_default_secret_or_without_its_root() -> None:
    from service.http.app import create_app

    secure = {
        "jwt_secret": "s" * 32,
        "key_hash_secret": "k" * 32,
        **_certified_key(),
        "database_url": "postgresql://timex@db.invalid/timex",
    }

    with pytest.raises(RuntimeError, match="JWT_SECRET"):
        create_app(Settings(_env_file=None, environment="production", **{**secure, "jwt_secret": DEV_SECRET}))
    with pytest.raises(RuntimeError, match="CERTIFICATE_KEY_SECRET"):
        create_app(Settings(_env_file=None, environment="production", **{**secure, "certificate_private_key": None}))
    with pytest.raises(RuntimeError, match="ROOT_CERTIFICATE"):
        create_app(Settings(_env_file=None, environment="production", **{**secure, "root_certificate": None}))
    with pytest.raises(RuntimeError, match="CERTIFICATE_CHAIN"):
        create_app(Settings(_env_file=None, environment="production", **{**secure, "certificate_chain": None}))
    assert create_app(Settings(_env_file=None, environment="production", **secure))
    stored_keys = {**secure, "certificate_private_key": None, "certificate_key_secret": "c" * 32}
    assert create_app(Settings(_env_file=None, environment="production", **stored_keys))


def test_production_refuses_the_embedded_sqlite_database_unless_allowed() -> None:
    from service.http.app import create_app

    secure = {
        "jwt_secret": "s" * 32,
        "key_hash_secret": "k" * 32,
        **_certified_key(),
        "environment": "production",
        "database_url": "sqlite+aiosqlite:///./forgotten.db",
    }

    with pytest.raises(RuntimeError, match="DATABASE_URL"):
        create_app(Settings(_env_file=None, **secure))
    assert create_app(Settings(_env_file=None, allow_sqlite_in_production=True, **secure))


def test_rotating_the_signing_key_is_refused_while_certificate_private_key_gives_it(tmp_path: Path) -> None:
    from service.certificates import generate_private_key

    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'timex.db'}",
        "CERTIFICATE_PRIVATE_KEY": generate_private_key(),
    }
    rotated = subprocess.run(
        [sys.executable, "-m", "service.cli", "rotate-signing-key"], capture_output=True, text=True, env=env, timeout=60
    )

    assert rotated.returncode == 1
    assert "CERTIFICATE_PRIVATE_KEY" in rotated.stderr
