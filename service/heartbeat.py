"""The webhook worker's heartbeat: a file whose modification time says when the worker's loop last completed a pass."""

import logging
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
