"""Real service processes for the tests that need them: `timex-licensing serve` on a free port."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

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
    # The log goes to a file, not a pipe: nobody reads a pipe until the server stops, and a server whose log
    # fills the pipe's buffer (64 KiB, a few hundred requests) blocks on its next line.
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            env=env,
            cwd=cwd or os.getcwd(),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + ready_path)
                    break
                except httpx.ConnectError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the service did not start: " + _read(log)) from None
                    time.sleep(0.1)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=10)
            SERVER_LOGS.append(_read(log))


def _read(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


@contextmanager
def running_worker(env: dict[str, str]) -> Iterator[Callable[[], str]]:
    """`timex-licensing worker`, stopped (SIGTERM) on the way out; yields a way to read its log so far, which is
    kept with the servers'."""
    with tempfile.TemporaryFile() as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            yield lambda: _read(log)
        finally:
            worker.terminate()
            worker.wait(timeout=10)
            SERVER_LOGS.append(_read(log))
