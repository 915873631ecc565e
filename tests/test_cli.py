"""The `timex-licensing` command: tokens, migrations, and a real `serve`, on the embedded PostgreSQL when no
DATABASE_URL is set; the worker's liveness check."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from service.auth import TokenSettings, issue_token, verify_token
from service.cli import main
from service.clock import Clock
from service.keyformat import generate
from service.settings import DEV_SECRET, Settings
from tests.servers import free_port, running_server


def test_token_prints_a_signed_admin_token(capsys) -> None:
    main(["token", "--role", "admin", "--subject", "ops"])

    principal = verify_token(TokenSettings.of(Settings(_env_file=None)), capsys.readouterr().out.strip())

    assert (principal.role, principal.subject) == ("admin", "ops")


def _admin() -> dict[str, str]:
    settings = Settings(_env_file=None)
    token = issue_token(TokenSettings.of(settings), "admin", "ops", Clock(settings.zone).now(), timedelta(minutes=5))
    return {"Authorization": f"Bearer {token}"}


def _quick_start_env() -> dict[str, str]:
    """The environment of a newcomer's shell: no DATABASE_URL."""
    return {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}


@pytest.fixture
def working_dir() -> Iterator[Path]:
    """A newcomer's checkout: not under pytest's own temporary folder, whose permissions any pytest session
    starting meanwhile resets to its owner's alone (the embedded server runs as a user of its own)."""
    folder = Path(tempfile.mkdtemp(prefix="timex-quick-start-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _embedded_server_running(data_dir: Path) -> bool:
    return (data_dir / "postmaster.pid").exists()


def test_the_quick_start_serves_on_an_embedded_postgresql_that_keeps_its_data(working_dir: Path) -> None:
    """No DATABASE_URL: `serve` starts a PostgreSQL of its own in ./timex-data/postgres, migrates it, and stops it
    when it exits; started again, it finds what it had."""
    data_dir = working_dir / "timex-data" / "postgres"
    with running_server(_quick_start_env(), cwd=working_dir, ready_path="/docs") as url:
        docs = httpx.get(f"{url}/docs")
        registered = httpx.post(
            f"{url}/v1/installations", json={"code": "ACME-0001", "purchased_on": "2025-03-15"}, headers=_admin()
        )
        assert _embedded_server_running(data_dir)
    assert not _embedded_server_running(data_dir)

    with running_server(_quick_start_env(), cwd=working_dir) as url:
        support = httpx.get(f"{url}/v1/installations/ACME-0001/support")

    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert registered.status_code == 201, registered.text
    assert support.status_code == 200 and support.json()["support_end"] == "2026-03-15"
    assert (data_dir / "PG_VERSION").read_text().strip() == "18"


def _issue_keys(working_dir: Path, count: int) -> subprocess.CompletedProcess[str]:
    """`issue-keys` run as a newcomer would, in `working_dir`: on the embedded server."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "issue-keys", "--count", str(count)],
        cwd=working_dir,
        env=_quick_start_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_two_commands_at_once_share_one_embedded_server(working_dir: Path) -> None:
    """`issue-keys` run while `serve` runs joins its server, and leaves it running for `serve` when it exits."""
    with running_server(_quick_start_env(), cwd=working_dir) as url:
        issued = _issue_keys(working_dir, 2)
        listed = httpx.get(f"{url}/v1/keys", headers=_admin())

    assert issued.returncode == 0, issued.stderr
    key_ids = {json.loads(line)["key_id"] for line in issued.stdout.splitlines()}
    assert key_ids == {key["key_id"] for key in listed.json()["items"]}


def test_a_command_killed_outright_does_not_keep_the_embedded_server_running(working_dir: Path) -> None:
    """`serve` killed with SIGKILL (the OOM killer, `kill -9`) never says it is gone: the next command to use the
    server counts it out, and, being the last, stops the server as it exits."""
    data_dir = working_dir / "timex-data" / "postgres"
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        cwd=working_dir,
        env=_quick_start_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"http://127.0.0.1:{port}/healthz"):
            assert serve.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        serve.kill()
        serve.wait(10)
        assert _embedded_server_running(data_dir), "the server outlives a command killed outright"

        issued = _issue_keys(working_dir, 1)

        assert issued.returncode == 0, issued.stderr
        assert not _embedded_server_running(data_dir)
    finally:
        serve.kill()
        _stop_embedded_server(data_dir)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def _stop_embedded_server(data_dir: Path) -> None:
    """Whatever a failed test left running: the postmaster, by the pid it wrote."""
    pid_file = data_dir / "postmaster.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


def test_serve_believes_x_forwarded_for_only_from_trusted_proxies(own_database_url: str) -> None:
    """No proxy is trusted by default: a local caller naming other addresses is still one caller, and its
    failed activations count against it."""
    env = {**os.environ, "DATABASE_URL": own_database_url, "ACTIVATION_FAILURE_LIMIT": "2"}
    admin = _admin()
    with running_server(env) as url:
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

    from tests.roots import certified_key

    now = Clock(Settings(_env_file=None).zone).now()
    root_pem, key, der = certified_key(now, now + timedelta(days=400))
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


def test_production_refuses_the_embedded_postgresql(tmp_path: Path) -> None:
    """A deploy that forgot DATABASE_URL is refused before any server starts, by `serve` and by the app."""
    from service.certificates import generate_private_key
    from service.http.app import create_app

    secure = {
        "JWT_SECRET": "s" * 32,
        "KEY_HASH_SECRET": "k" * 32,
        "CERTIFICATE_PRIVATE_KEY": generate_private_key(),
        "ENVIRONMENT": "production",
    }
    served = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve"],
        cwd=tmp_path,
        env={**_quick_start_env(), **secure},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert served.returncode != 0 and "set DATABASE_URL" in served.stderr
    assert not (tmp_path / "timex-data").exists()
    with pytest.raises(RuntimeError, match="DATABASE_URL"):
        create_app(Settings(_env_file=None, **{name.lower(): value for name, value in secure.items()}))


def test_rotating_the_signing_key_is_refused_while_certificate_private_key_gives_it(own_database_url: str) -> None:
    from service.certificates import generate_private_key

    env = {
        **os.environ,
        "DATABASE_URL": own_database_url,
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


def test_create_user_prints_the_setup_link_last_and_refuses_a_username_taken(own_database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": own_database_url, "CABINET_URL": "https://licensing.example.com"}
    command = [sys.executable, "-m", "service.cli", "create-user", "--role", "admin", "--username", "Boss"]

    created = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("https://licensing.example.com/cabinet/setup/")
    assert again.returncode == 1 and "user_exists" in again.stderr and again.stdout == ""


def _worker_alive(heartbeat: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`timex-licensing worker-alive`, run as a probe runs it: a process of its own."""
    env = {**os.environ, "WEBHOOK_WORKER_HEARTBEAT_FILE": str(heartbeat)}
    command = [sys.executable, "-m", "service.cli", "worker-alive", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True)


def test_worker_alive_passes_on_a_fresh_heartbeat_and_fails_on_a_stale_or_missing_one(tmp_path: Path) -> None:
    """The heartbeat's age against `--max-age` (300 s unless given); no heartbeat: no pass completed."""
    heartbeat = tmp_path / "heartbeat"

    missing = _worker_alive(heartbeat)
    assert missing.returncode == 1 and f"no heartbeat at {heartbeat}" in missing.stderr
    heartbeat.touch()
    assert _worker_alive(heartbeat).returncode == 0
    ten_minutes_ago = time.time() - 600
    os.utime(heartbeat, (ten_minutes_ago, ten_minutes_ago))
    stale = _worker_alive(heartbeat)
    assert stale.returncode == 1 and "more than 300 s" in stale.stderr
    assert _worker_alive(heartbeat, "--max-age", "900").returncode == 0
    assert _worker_alive(heartbeat, "--max-age", "60").returncode == 1


def test_worker_alive_loads_neither_the_database_nor_http_modules(tmp_path: Path) -> None:
    """A probe runs it every few seconds, on the worker's CPU: it reads a file's age and nothing more."""
    heartbeat = tmp_path / "heartbeat"
    heartbeat.touch()
    loaded = (
        "import sys\n"
        "from service.cli import main\n"
        "assert main(['worker-alive']) == 0\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    env = {**os.environ, "WEBHOOK_WORKER_HEARTBEAT_FILE": str(heartbeat)}
    checked = subprocess.run([sys.executable, "-c", loaded], env=env, capture_output=True, text=True, check=True)

    modules = set(checked.stdout.split())
    assert {module for module in modules if module.startswith("service")} == {
        "service",
        "service.cli",
        "service.heartbeat",
        "service.settings",
    }
    assert not modules & {"sqlalchemy", "asyncpg", "httpx", "fastapi", "starlette", "cryptography"}
