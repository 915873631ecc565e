"""The `timex-licensing` command: tokens, migrations, and a real `serve` on the embedded database."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.auth import TokenSettings, verify_token
from service.cli import main
from service.settings import Settings


def test_token_prints_a_signed_admin_token(capsys) -> None:
    main(["token", "--role", "admin", "--subject", "ops"])

    principal = verify_token(TokenSettings.of(Settings(_env_file=None)), capsys.readouterr().out.strip())

    assert (principal.role, principal.subject) == ("admin", "ops")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_migrates_the_embedded_database_and_serves_the_docs(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'timex.db'}"}
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
                              env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                docs = httpx.get(f"http://127.0.0.1:{port}/docs")
                break
            except httpx.ConnectError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()
                time.sleep(0.2)
        support = httpx.get(f"http://127.0.0.1:{port}/v1/installations/NONE/support")
    finally:
        server.terminate()
        server.wait(10)

    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert support.json()["code"] == "installation_not_found"
