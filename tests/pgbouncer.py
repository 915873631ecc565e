"""A PgBouncer of the test's own, in transaction mode, in front of the test's PostgreSQL: Debian's package
(`/usr/sbin/pgbouncer`), its configuration in a temporary folder, on a free loopback port."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.servers import free_port

# Debian puts it in /usr/sbin, which a user's PATH may not have.
PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")

needs_pgbouncer = pytest.mark.skipif(
    not PGBOUNCER and not os.environ.get("CI"), reason="no pgbouncer here (CI installs it and runs this test)"
)


@dataclass(frozen=True)
class PgBouncer:
    url: str
    """The database's URL through PgBouncer."""
    pid: int
    """Its process (or the `runuser` that started it, PgBouncer its child)."""


@contextmanager
def pgbouncer(database_url: str, *, pool_size: int = 4) -> Iterator[PgBouncer]:
    """PgBouncer forwarding every database of `database_url`'s server, `pool_size` server connections per
    database and user, each transaction on whichever is free."""
    url = make_url(database_url)
    # A TCP address, or a Unix socket's folder (the embedded PostgreSQL's `?host=/folder`).
    server_host, server_port = url.host or url.query["host"], url.port or 5432
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="timex-pgbouncer-"))
    (folder / "users.txt").write_text(f'"{url.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server_host} port={server_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder}/users.txt\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 500\n"
        f"logfile = {folder}/pgbouncer.log\n"
    )
    assert PGBOUNCER, "Debian's pgbouncer package is installed"
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        user = _unprivileged_user(server_host)
        for path in (folder, folder / "users.txt", folder / "pgbouncer.ini"):
            shutil.chown(path, user)
        command = ["runuser", "-u", user, "--", *command]
    bouncer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if bouncer.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {log(folder)}") from None
                time.sleep(0.05)
        through = url.set(host="127.0.0.1", port=port).difference_update_query(["host"])
        yield PgBouncer(through.render_as_string(hide_password=False), bouncer.pid)
    finally:
        bouncer.terminate()
        bouncer.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _unprivileged_user(server_host: str) -> str:
    """The owner of the server's socket folder, who may reach it (the embedded PostgreSQL's own user); or, for a
    TCP address, `postgres`, as Debian's PgBouncer runs (its package depends on postgresql-common, which makes
    the user)."""
    if server_host.startswith("/"):
        return pwd.getpwuid(os.stat(server_host).st_uid).pw_name
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "nobody"
    return "postgres"


def log(folder: Path) -> str:
    path = folder / "pgbouncer.log"
    return path.read_text(errors="replace") if path.exists() else ""
