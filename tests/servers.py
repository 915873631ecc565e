"""Real service processes for the tests that need them: `timex-licensing serve` on a free port."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SERVER_LOGS: list[str] = []
"""What every server the suite started wrote to its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(env: dict[str, str], cwd: Path | None = None, ready_path: str = "/healthz") -> Iterator[str]:
    """Start the service, wait until it answers, yield its base URL, stop it."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
                              env=env, cwd=cwd or os.getcwd(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + ready_path)
                break
            except httpx.ConnectError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the service did not start: " + server.stderr.read().decode()) from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
        SERVER_LOGS.append(stderr.decode(errors="replace"))
