"""The test double of the service's clock (`service.clock.Clock`): a test stands on any date."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from service.clock import Clock


class FixedClock(Clock):
    """A clock whose calendar stands still on one day; instants (token lifetimes) stay real, unless shifted."""

    def __init__(self, zone: ZoneInfo, today: date):
        super().__init__(zone)
        self._today = today
        self._shift = timedelta()

    def set(self, today: date) -> None:
        self._today = today

    def shift(self, by: timedelta) -> None:
        """Instants run `by` from the real ones from now on (a certificate issued a month ago)."""
        self._shift = by

    def now(self) -> datetime:
        return super().now() + self._shift

    def _day_of(self, now: datetime) -> date:
        return self._today
