"""The service's sense of time. Rules never read a clock; the HTTP layer asks this one, and tests
replace it to stand on any date."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


class Clock:
    def __init__(self, zone: ZoneInfo):
        self.zone = zone

    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self) -> date:
        """Today in the business time zone: the day an activation counts for."""
        return self._day_of(self.now())

    def read(self) -> tuple[datetime, date]:
        """Now and the business day it falls on, from one reading: a request never straddles midnight."""
        now = self.now()
        return now, self._day_of(now)

    def _day_of(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()
