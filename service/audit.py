"""The audit log: who did what, when and from where, for every action taken in the cabinet, and for users
managed through the API. Written in the transaction of the action where the action is this package's own
(users, sessions); after it, in a transaction of its own, where the action is another module's."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import bindparam, insert, select

from service.driver import Driver, Rows, Session, retried
from service.models import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who acts, and from where: a signed-in user, an API token's admin (`token:<subject>`), or a visitor."""

    name: str
    address: str
    user_id: UUID | None = None
    reseller_id: UUID | None = None


@dataclass(frozen=True)
class Entry:
    id: int
    occurred_at: datetime
    user_id: UUID | None
    actor: str
    reseller_id: UUID | None
    action: str
    target: str | None
    details: dict[str, object] | None
    address: str


class _EntryRow(NamedTuple):
    id: int
    occurred_at: datetime
    user_id: UUID | None
    actor: str
    reseller_id: UUID | None
    action: str
    target: str | None
    details: str | None
    address: str


_COLUMNS = ("occurred_at", "user_id", "actor", "reseller_id", "action", "target", "details", "address")
_RECORD = insert(AuditEvent).values({column: bindparam(column) for column in _COLUMNS})


async def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    now: datetime,
    target: str | None = None,
    reseller_id: UUID | None = None,
    details: dict[str, object] | None = None,
) -> None:
    """Inside the action's own transaction. `reseller_id`: whose business it was, when not the actor's own."""
    await session.execute(
        _RECORD,
        {
            "occurred_at": now,
            "user_id": actor.user_id,
            "actor": actor.name,
            "reseller_id": reseller_id or actor.reseller_id,
            "action": action,
            "target": target,
            "details": None if details is None else json.dumps(details, default=str, sort_keys=True),
            "address": actor.address,
        },
    )


@retried
async def record_alone(
    *,
    driver: Driver,
    actor: Actor,
    action: str,
    now: datetime,
    target: str | None = None,
    reseller_id: UUID | None = None,
    details: dict[str, object] | None = None,
) -> None:
    """After an action another module's function committed."""
    async with driver.transaction() as session:
        await record(
            session, actor=actor, action=action, now=now, target=target, reseller_id=reseller_id, details=details
        )


_LIST = select(
    AuditEvent.id,
    AuditEvent.occurred_at,
    AuditEvent.user_id,
    AuditEvent.actor,
    AuditEvent.reseller_id,
    AuditEvent.action,
    AuditEvent.target,
    AuditEvent.details,
    AuditEvent.address,
).order_by(AuditEvent.id.desc())


async def entries(
    *, driver: Driver, before: int | None = None, limit: int = 100, reseller_id: UUID | None = None
) -> tuple[list[Entry], bool]:
    """The newest entries first, a page at a time (`before`: the last id of the previous page), and whether more
    follow."""
    statement = _LIST.limit(limit + 1)
    if before is not None:
        statement = statement.where(AuditEvent.id < before)
    if reseller_id is not None:
        statement = statement.where(AuditEvent.reseller_id == reseller_id)
    async with driver.reading() as session:
        rows = await session.all(Rows(statement, _EntryRow), {})
    found = [
        Entry(**{**row._asdict(), "details": None if row.details is None else json.loads(row.details)})
        for row in rows[:limit]
    ]
    return found, len(rows) > limit
