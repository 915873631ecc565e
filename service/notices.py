"""Events found from the calendar rather than from a change: an installation's support about to end
(`installation.support_expiring`, while the early-renewal bonus can still be earned) and ended
(`installation.support_lapsed`). Any worker looks for them, as often as it likes: each is emitted once per
support period."""

from datetime import date, datetime, timedelta
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import bindparam, select

from service import installations, rules, webhooks
from service.driver import Driver, Duplicate, Rows
from service.models import Installation, WebhookEvent

LAPSE_NOTICE_DAYS = 30
"""A lapse is announced up to this many days after it (a worker down for a while still announces it); one
older than that is not news, and a first worker started on an old database does not announce years of them."""

# Only those whose stored support end is near today (its index): the notice itself is the rules' to say.
_ENDING_NEAR = Rows(
    select(*installations.COLUMNS)
    .where(
        Installation.support_end.between(bindparam("from"), bindparam("to")),
        Installation.id > bindparam("after"),
    )
    .order_by(Installation.id)
    .limit(bindparam("batch")),
    installations.InstallationRow,
)


class _Announced(NamedTuple):
    id: UUID


_ANNOUNCED = Rows(
    select(WebhookEvent.id).where(
        WebhookEvent.installation_id == bindparam("installation_id"),
        WebhookEvent.type == bindparam("type"),
        WebhookEvent.period_end == bindparam("period_end"),
    ),
    _Announced,
)


async def emit_support_notices(
    *, driver: Driver, today: date, now: datetime, days_before: int, batch: int = 1000
) -> int:
    """Every installation whose support ends within `days_before` days (`installation.support_expiring`: still
    time for the early-renewal bonus) or ended lately (`installation.support_lapsed`, from the day after the end),
    announced once per support period: the outbox's unique (installation, type, period end) refuses a second
    announcement, whichever worker makes it. The events emitted."""
    emitted = 0
    last_id = 0
    while True:
        async with driver.reading() as session:
            window = {"from": today - timedelta(days=LAPSE_NOTICE_DAYS), "to": today + timedelta(days=days_before)}
            rows = await session.all(_ENDING_NEAR, {**window, "after": last_id, "batch": batch})
        if not rows:
            return emitted
        last_id = rows[-1].id
        for row in rows:
            installation = installations.record_of(row)
            notice = _notice(installation.support, today, days_before)
            if notice is not None and await _emit_once(driver, notice, installation, now):
                emitted += 1


def _notice(support: rules.Support, today: date, days_before: int) -> str | None:
    if support.is_active(today):
        return webhooks.SUPPORT_EXPIRING if today >= support.end - timedelta(days=days_before) else None
    return webhooks.SUPPORT_LAPSED if today <= support.end + timedelta(days=LAPSE_NOTICE_DAYS) else None


async def _emit_once(driver: Driver, type: str, installation: installations.InstallationRecord, now: datetime) -> bool:
    event = webhooks.Event.of(
        type,
        installation,
        reseller_id=installation.reseller_id,
        now=now,
        installation_id=installation.id,
        period_end=installation.support.end,
    )
    key = {"installation_id": installation.id, "type": type, "period_end": installation.support.end}
    try:
        async with driver.transaction() as session:
            if await session.first(_ANNOUNCED, key) is not None:
                return False  # the common case, found every day of the window: no failed insert to log
            await webhooks.emit(session, event)
    except Duplicate:
        return False  # another worker announced it meanwhile
    return True
