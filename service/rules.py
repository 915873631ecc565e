"""The Timex Support licensing rules (R1–R10 of service/docs/licensing-rules.md), as plain functions.

No I/O, no clock: "today" is always a parameter. Support is `anchor + months` calendar months
(R2); everything else is arithmetic on that pair.
"""

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

from service.errors import N_, LicensesInsufficient, PurchaseInFuture

LICENSE_MONTHS = 12
EARLY_RENEWAL_BONUS_MONTHS = 2


def add_months(start: date, months: int) -> date:
    """R2: calendar months, the day clamped to the month's last day (2024-01-31 + 1 = 2024-02-29)."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Support:
    """R2: support end is always anchor + months, never accumulated, so month ends never drift."""

    anchor: date
    months: int

    @cached_property
    def end(self) -> date:
        """Computed once per value: a support-state answer asks for it four times."""
        return add_months(self.anchor, self.months)

    def is_active(self, on: date) -> bool:
        """R1: the end day itself is covered."""
        return on <= self.end

    def plus(self, months: int) -> "Support":
        return Support(self.anchor, self.months + months)


def purchase(purchased_on: date, today: date) -> Support:
    """R3: a new sale gives a year from the purchase date; a purchase in the future is refused."""
    if purchased_on > today:
        raise PurchaseInFuture(
            N_("The purchase date %(purchased_on)s is after today (%(today)s)"),
            purchased_on=purchased_on.isoformat(),
            today=today.isoformat(),
        )
    return Support(purchased_on, LICENSE_MONTHS)


def existing_customer(support_end: date) -> Support:
    """R2: a customer moved from another system takes its known support end as anchor, M = 0."""
    return Support(support_end, 0)


@dataclass(frozen=True)
class LicensePeriod:
    """What one license covers: from the day after the old end to the new end."""

    start: date
    end: date
    bonus_months: int


@dataclass(frozen=True)
class Renewal:
    before: Support
    after: Support
    periods: tuple[LicensePeriod, ...]

    @property
    def months_added(self) -> int:
        return self.after.months - self.before.months

    @property
    def bonus_months(self) -> int:
        return sum(period.bonus_months for period in self.periods)


def renew(support: Support, licenses: int, on: date) -> Renewal:
    """R4/R5: apply the licenses one after another on day `on`, each against the end the one before
    left: +12 and the +2 bonus while active, +12 back-dated once lapsed. R6 is not checked here."""
    current, periods = support, []
    for _ in range(licenses):
        bonus = EARLY_RENEWAL_BONUS_MONTHS if current.is_active(on) else 0
        renewed = current.plus(LICENSE_MONTHS + bonus)
        periods.append(LicensePeriod(current.end + timedelta(days=1), renewed.end, bonus))
        current = renewed
    return Renewal(support, current, tuple(periods))


def activate(support: Support, licenses: int, on: date) -> Renewal:
    """R5 + R6: renew, refusing as a whole when support would still be lapsed on `on`."""
    if licenses < 1:
        raise ValueError("an activation needs at least one license")
    renewal = renew(support, licenses, on)
    if not renewal.after.is_active(on):
        raise LicensesInsufficient(required=licenses_required(support, on), supplied=licenses)
    return renewal


def bonus_lost_on(support: Support) -> date:
    """R5 with R1: the first day on which renewing earns no bonus months: the day after the support end."""
    return support.end + timedelta(days=1)


def licenses_required(support: Support, on: date) -> int:
    """R7: one while active; once lapsed, the least n >= 1 with anchor + (M + 12n) months >= on."""
    if support.is_active(on):
        return 1
    months_short = (on.year - support.anchor.year) * 12 + on.month - support.anchor.month - support.months
    # Start just below the answer (the clamped day can cost at most one more license) and step up.
    n = max(1, -(-months_short // LICENSE_MONTHS) - 1)
    while not support.plus(LICENSE_MONTHS * n).is_active(on):
        n += 1
    return n


def missed_years(support: Support, on: date) -> int:
    """R7: the licenses whose whole year lies before `on`."""
    return 0 if support.is_active(on) else licenses_required(support, on) - 1


@dataclass(frozen=True)
class Quote:
    support_end: date
    on: date
    active: bool
    licenses_required: int
    missed_years: int
    licenses: int
    unit_price_minor: int
    total_minor: int
    sufficient: bool
    support_end_after: date
    periods: tuple[LicensePeriod, ...]


def quote(support: Support, on: date, unit_price_minor: int, licenses: int | None = None) -> Quote:
    """R7 + R8: what renewing on `on` takes and costs; `licenses` defaults to the number required."""
    required = licenses_required(support, on)
    licenses = required if licenses is None else licenses
    renewal = renew(support, licenses, on)
    return Quote(
        support_end=support.end,
        on=on,
        active=support.is_active(on),
        licenses_required=required,
        missed_years=missed_years(support, on),
        licenses=licenses,
        unit_price_minor=unit_price_minor,
        total_minor=licenses * unit_price_minor,
        sufficient=licenses >= required,
        support_end_after=renewal.after.end,
        periods=renewal.periods,
    )


def pipeline_state(support_end: date, on: date, expiring_within_days: int) -> str:
    """Where an installation stands for its reseller on `on`: `lapsed` once support has ended (R1: the end day
    itself is covered), `expiring` while it ends within `expiring_within_days` days (renewing now earns the R5
    bonus), else `active`."""
    if on > support_end:
        return "lapsed"
    if support_end <= on + timedelta(days=expiring_within_days):
        return "expiring"
    return "active"


def pipeline_support_ends(state: str, on: date, expiring_within_days: int) -> tuple[date | None, date | None]:
    """The support ends (first, last; None: unbounded) of the installations in `state` on `on`: the bounds
    `pipeline_state` draws, for a query to filter by."""
    soon = on + timedelta(days=expiring_within_days)
    bounds = {
        "lapsed": (None, on - timedelta(days=1)),
        "expiring": (on, soon),
        "active": (soon + timedelta(days=1), None),
    }
    return bounds[state]


def may_open_support_requests(support: Support, on: date) -> bool:
    """R9: support requests while support is active."""
    return support.is_active(on)


def may_install_release(support: Support, released_on: date) -> bool:
    """R9: a release published up to the support end, whether or not support is active today."""
    return released_on <= support.end


def fold(start: Support, activations: Iterable[tuple[date, int]]) -> Renewal:
    """Replay a ledger, each (activated_on, licenses) in order: what support must be now, with
    every license period granted on the way."""
    current, periods = start, list[LicensePeriod]()
    for activated_on, licenses in activations:
        renewal = renew(current, licenses, activated_on)
        current = renewal.after
        periods.extend(renewal.periods)
    return Renewal(start, current, tuple(periods))


def refused_in_fold(start: Support, activations: Iterable[tuple[date, int]]) -> list[int]:
    """R6 over a ledger: the positions of the activations that R6 would have refused, replayed in order from
    `start` (support still lapsed on their day after them). A ledger the service wrote has none, whatever was
    voided since (voids take only the newest activations, see `ledger.void`)."""
    current, refused = start, list[int]()
    for position, (activated_on, licenses) in enumerate(activations):
        current = renew(current, licenses, activated_on).after
        if not current.is_active(activated_on):
            refused.append(position)
    return refused
