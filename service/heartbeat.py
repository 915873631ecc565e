"""The webhook worker's heartbeat: a file whose modification time says when the worker's loop last completed a pass,
and its age, which `timex-licensing worker-alive` (a liveness probe, a fresh process every few seconds) checks.
Nothing here loads the service's database or HTTP modules: the check must start in a fraction of a second."""

import logging
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("service.webhooks")


class Heartbeat:
    """Written by one loop. A file that cannot be written is said in the log once, until it can be again: the loop
    goes on delivering, and the probe reading the file fails, as it should, since it cannot tell."""

    def __init__(self, path: Path):
        self.path = path
        self._failing = False

    def clear(self) -> None:
        """Removes a heartbeat left by an earlier run (a container restarted in its pod keeps its `/tmp`): it says
        nothing of this one."""
        self._write(lambda: self.path.unlink(missing_ok=True))

    def beat(self) -> None:
        """A pass has just completed."""
        self._write(self.path.touch)

    def _write(self, write: Callable[[], None]) -> None:
        try:
            write()
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "the worker's heartbeat %s cannot be written (its liveness check fails): %s", self.path, exc
                )
            self._failing = True
        else:
            self._failing = False


def age(path: Path) -> float | None:
    """Seconds since the last pass recorded in `path`; None when there is none."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
