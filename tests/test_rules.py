"""The licensing rules R1–R10 (service/docs/licensing-rules.md), as plain functions of dates and integers."""

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import rules
from service.errors import LicensesInsufficient, PurchaseInFuture
from service.rules import Support, add_months

# --- R2: calendar months, clamped, never drifting


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2023, 1, 31), 1, date(2023, 2, 28)),
        (date(2023, 12, 31), 40, date(2027, 4, 30)),
        (date(2025, 2, 28), 26, date(2027, 4, 28)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2024, 2, 29), 48, date(2028, 2, 29)),
        (date(2025, 3, 15), 0, date(2025, 3, 15)),
    ],
)
def test_r2_months_are_calendar_months_clamped_to_the_month_end(start: date, months: int, expected: date) -> None:
    assert add_months(start, months) == expected


def test_r2_a_month_end_anchor_never_drifts() -> None:
    support = Support(date(2023, 12, 31), 14)  # ends 2025-02-28
    renewed = rules.renew(support, 1, date(2025, 3, 1)).after

    assert renewed.end == date(2026, 2, 28)
    assert rules.renew(renewed, 1, date(2026, 1, 1)).after.end == date(2027, 4, 30)


# --- R1, R3


def test_r1_the_end_day_itself_is_covered() -> None:
    support = Support(date(2025, 3, 15), 12)

    assert support.is_active(date(2026, 3, 15))
    assert not support.is_active(date(2026, 3, 16))


def test_r3_a_purchase_gives_a_year_from_the_purchase_date() -> None:
    assert rules.purchase(date(2025, 3, 15), today=date(2025, 3, 15)) == Support(date(2025, 3, 15), 12)


def test_r3_a_purchase_in_the_future_is_refused() -> None:
    with pytest.raises(PurchaseInFuture):
        rules.purchase(date(2025, 3, 16), today=date(2025, 3, 15))


def test_r2_an_existing_customer_is_anchored_on_its_support_end() -> None:
    assert rules.existing_customer(date(2026, 5, 31)) == Support(date(2026, 5, 31), 0)


# --- the worked examples of service/docs/licensing-rules.md (R4–R7)

WORKED_EXAMPLES = [
    # anchor, M, today, keys, M after (None: refused), support end after, required, missed years
    (date(2025, 3, 15), 12, date(2026, 1, 10), 1, 26, date(2027, 5, 15), 1, 0),
    (date(2025, 3, 15), 12, date(2026, 3, 15), 1, 26, date(2027, 5, 15), 1, 0),
    (date(2025, 3, 15), 12, date(2026, 3, 16), 1, 24, date(2027, 3, 15), 1, 0),
    (date(2025, 3, 15), 12, date(2027, 3, 15), 1, 24, date(2027, 3, 15), 1, 0),
    (date(2025, 3, 15), 12, date(2027, 3, 16), 1, None, None, 2, 1),
    (date(2025, 3, 15), 12, date(2027, 3, 16), 2, 36, date(2028, 3, 15), 2, 1),
    (date(2025, 3, 15), 12, date(2026, 6, 15), 2, 38, date(2028, 5, 15), 1, 0),
    (date(2023, 12, 31), 14, date(2025, 3, 1), 1, 26, date(2026, 2, 28), 1, 0),
    (date(2024, 2, 29), 12, date(2025, 2, 28), 1, 26, date(2026, 4, 29), 1, 0),
]


@pytest.mark.parametrize(
    ("anchor", "months", "today", "keys", "months_after", "end_after", "required", "missed"), WORKED_EXAMPLES
)
def test_the_worked_examples(anchor, months, today, keys, months_after, end_after, required, missed) -> None:
    support = Support(anchor, months)

    assert rules.licenses_required(support, today) == required
    assert rules.missed_years(support, today) == missed
    if months_after is None:
        with pytest.raises(LicensesInsufficient) as refusal:
            rules.activate(support, keys, today)
        assert (refusal.value.required, refusal.value.supplied) == (required, keys)
    else:
        renewal = rules.activate(support, keys, today)
        assert (renewal.after.months, renewal.after.end) == (months_after, end_after)
        # What the activation answer reports as `support_end_before` and `months_added`.
        assert renewal.before == support
        assert renewal.months_added == months_after - months
        assert renewal.bonus_months == sum(p.bonus_months for p in renewal.periods)


def test_r4_a_lapsed_license_is_back_dated_to_the_day_after_the_old_end() -> None:
    renewal = rules.renew(Support(date(2025, 3, 15), 12), 1, date(2026, 11, 24))

    assert renewal.periods == (rules.LicensePeriod(date(2026, 3, 16), date(2027, 3, 15), 0),)


def test_r8_the_quote_of_the_contract_example() -> None:
    quote = rules.quote(Support(date(2025, 3, 15), 12), date(2027, 3, 16), unit_price_minor=1_200_000)

    assert (quote.licenses_required, quote.missed_years, quote.licenses, quote.sufficient) == (2, 1, 2, True)
    assert quote.total_minor == 2_400_000
    assert quote.support_end_after == date(2028, 3, 15)
    assert [(p.start, p.end, p.bonus_months) for p in quote.periods] == [
        (date(2026, 3, 16), date(2027, 3, 15), 0),
        (date(2027, 3, 16), date(2028, 3, 15), 0),
    ]


def test_r8_a_quote_says_which_support_end_it_starts_from_on_which_day_and_at_which_unit_price() -> None:
    lapsed = rules.quote(Support(date(2025, 3, 15), 12), date(2027, 3, 16), unit_price_minor=1_200_000)
    active = rules.quote(Support(date(2025, 3, 15), 12), date(2026, 3, 15), unit_price_minor=999)

    assert (lapsed.support_end, lapsed.on, lapsed.active, lapsed.unit_price_minor) == (
        date(2026, 3, 15),
        date(2027, 3, 16),
        False,
        1_200_000,
    )
    assert (active.support_end, active.on, active.active, active.unit_price_minor) == (
        date(2026, 3, 15),
        date(2026, 3, 15),
        True,
        999,
    )
    assert (active.licenses, active.total_minor, active.support_end_after) == (1, 999, date(2027, 5, 15))


def test_r8_quoting_fewer_licenses_than_required_is_insufficient() -> None:
    quote = rules.quote(Support(date(2025, 3, 15), 12), date(2027, 3, 16), 1_200_000, licenses=1)

    assert (quote.sufficient, quote.total_minor) == (False, 1_200_000)


def test_r9_entitlements() -> None:
    support = Support(date(2025, 3, 15), 12)

    assert rules.may_open_support_requests(support, date(2026, 3, 15))
    assert not rules.may_open_support_requests(support, date(2026, 3, 16))
    assert rules.may_install_release(support, released_on=date(2026, 3, 15))
    assert not rules.may_install_release(support, released_on=date(2026, 3, 16))


def test_r7_decades_of_lapse_are_counted_without_looping_through_them() -> None:
    support = Support(date(2001, 1, 31), 12)

    assert rules.licenses_required(support, date(2099, 12, 31)) == 98


# --- properties

days = st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 12, 31))
supports = st.builds(Support, anchor=days, months=st.integers(0, 120))
ledgers = st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 4)), max_size=6)


def _dated(support: Support, steps: list[tuple[int, int]]) -> list[tuple[date, int]]:
    """Activation days that move forward from the anchor, as days do."""
    day, out = support.anchor, []
    for offset, licenses in steps:
        day = date.fromordinal(min(day.toordinal() + offset, date(2099, 1, 1).toordinal()))
        out.append((day, licenses))
    return out


@given(supports, days, st.integers(1, 6))
def test_r5_n_keys_at_once_equal_n_single_keys_on_the_same_day(support: Support, on: date, n: int) -> None:
    one_by_one = support
    for _ in range(n):
        one_by_one = rules.renew(one_by_one, 1, on).after

    assert rules.renew(support, n, on).after == one_by_one


@given(supports, ledgers)
def test_r2_support_end_is_always_anchor_plus_months(support: Support, steps: list) -> None:
    current = support
    for on, licenses in _dated(support, steps):
        current = rules.renew(current, licenses, on).after
        assert current.end == add_months(support.anchor, current.months)


@given(supports, days)
def test_r6_r7_exactly_the_required_licenses_succeed_and_one_fewer_is_refused(support: Support, on: date) -> None:
    required = rules.licenses_required(support, on)

    assert rules.activate(support, required, on).after.is_active(on)
    if required > 1:
        with pytest.raises(LicensesInsufficient):
            rules.activate(support, required - 1, on)


@given(supports, days, st.integers(1, 6))
def test_an_activation_never_shortens_support_and_the_bonus_needs_active_support(
    support: Support, on: date, n: int
) -> None:
    renewal = rules.renew(support, n, on)

    assert renewal.after.end > support.end
    current = support
    for period in renewal.periods:
        assert period.bonus_months == (rules.EARLY_RENEWAL_BONUS_MONTHS if current.is_active(on) else 0)
        current = current.plus(rules.LICENSE_MONTHS + period.bonus_months)


@given(supports, ledgers)
def test_folding_a_ledger_equals_applying_its_activations_one_by_one(support: Support, steps: list) -> None:
    ledger = _dated(support, steps)
    current = support
    for on, licenses in ledger:
        current = rules.renew(current, licenses, on).after

    assert rules.fold(support, ledger).after == current


def test_folding_a_ledger_counts_the_bonus_months_it_granted() -> None:
    """Ends 2026-03-15: renewed early on 2026-01-10 (+2), then twice on 2027-05-15, its last day (+2, +2)."""
    folded = rules.fold(Support(date(2025, 3, 15), 12), [(date(2026, 1, 10), 1), (date(2027, 5, 15), 2)])

    assert folded.bonus_months == 6
    assert folded.months_added == 14 + 28
    assert folded.before == Support(date(2025, 3, 15), 12)


# --- The renewal pipeline: where an installation stands, and the support ends a query filters by


@pytest.mark.parametrize(
    ("support_end", "state"),
    [
        (date(2026, 11, 23), "lapsed"),
        (date(2026, 11, 24), "expiring"),  # R1: the end day itself is covered
        (date(2027, 1, 23), "expiring"),
        (date(2027, 1, 24), "active"),
    ],
)
def test_an_installation_is_expiring_while_its_support_ends_within_the_days_given(
    support_end: date, state: str
) -> None:
    assert rules.pipeline_state(support_end, date(2026, 11, 24), 60) == state


@given(
    st.dates(date(2000, 1, 1), date(2100, 12, 31)),
    st.dates(date(2000, 1, 2), date(2090, 12, 31)),
    st.integers(0, 3660),
    st.sampled_from(["active", "expiring", "lapsed"]),
)
def test_the_support_ends_of_a_state_are_exactly_those_of_its_installations(
    support_end: date, on: date, days: int, state: str
) -> None:
    first, last = rules.pipeline_support_ends(state, on, days)
    within = (first is None or first <= support_end) and (last is None or support_end <= last)

    assert within == (rules.pipeline_state(support_end, on, days) == state)
