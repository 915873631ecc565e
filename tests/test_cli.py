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


def test_production_refuses_to_start_with_a_default_secret() -> None:
    from service.certificates import generate_private_key
    from service.http.app import create_app

    secure = {
        "jwt_secret": "s" * 32,
        "key_hash_secret": "k" * 32,
        "certificate_private_key": generate_private_key(),
        "database_url": "postgresql://timex@db.invalid/timex",
    }

    with pytest.raises(RuntimeError, match="JWT_SECRET"):
        create_app(Settings(_env_file=None, environment="production", **{**secure, "jwt_secret": DEV_SECRET}))
    with pytest.raises(RuntimeError, match="CERTIFICATE_KEY_SECRET"):
        create_app(Settings(_env_file=None, environment="production", **{**secure, "certificate_private_key": None}))
    assert create_app(Settings(_env_file=None, environment="production", **secure))
    stored_keys = {**secure, "certificate_private_key": None, "certificate_key_secret": "c" * 32}
    assert create_app(Settings(_env_file=None, environment="production", **stored_keys))


def test_production_refuses_the_embedded_sqlite_database_unless_allowed() -> None:
    from service.certificates import generate_private_key
    from service.http.app import create_app

    secure = {
        "jwt_secret": "s" * 32,
        "key_hash_secret": "k" * 32,
        "certificate_private_key": generate_private_key(),
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


def _shipped_secrets() -> set[str]:
    """Every value the repository ships for a secret setting: `compose.env.example`'s and the built-in defaults."""
    example = (Path(__file__).parent.parent / "compose.env.example").read_text()
    values = {line.split("=", 1)[1] for line in example.splitlines() if "SECRET=" in line or "PASSWORD=" in line}
    return values | {DEV_SECRET}


@pytest.mark.parametrize("setting", ["jwt_secret", "key_hash_secret", "certificate_key_secret", "metrics_token"])
@pytest.mark.parametrize("value", [*sorted(_shipped_secrets()), "s" * 31, "é" * 15])
def test_production_refuses_a_short_secret_or_one_the_repository_ships(setting: str, value: str) -> None:
    """Shorter than 32 bytes (UTF-8), or a value shipped here (`compose.env.example`'s `change-me`), is refused,
    naming the setting."""
    secure = {
        "jwt_secret": "s" * 32,
        "key_hash_secret": "k" * 32,
        "certificate_key_secret": "c" * 32,
        "database_url": "postgresql://timex@db.invalid/timex",
        "environment": "production",
    }

    with pytest.raises(RuntimeError, match=setting.upper()):
        Settings(_env_file=None, **{**secure, setting: value}).check_production()
