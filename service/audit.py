"""The audit log: who did what, when and from where, for every action taken in the cabinet, and for users
managed through the API.

An entry is written in the transaction of its action, so that the two are committed together or not at all:
by `service.users` itself for users and sessions, and by another module's function (a sale registered, keys
issued, a void…) when its caller hands it the entry to write (`Pending`). What writes nothing else (a refused
sign-in, a quote opened, a CSV downloaded) is written in a transaction of its own (`record_alone`)."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, NamedTuple, TypeVar
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


class About(NamedTuple):
    """What an action was done to (`target`), whose business it was when not the actor's own, and how."""

    target: str | None = None
    reseller_id: UUID | None = None
    details: dict[str, object] | None = None


R = TypeVar("R")


@dataclass(frozen=True)
class Pending(Generic[R]):
    """An entry for a function of another module to write in its action's transaction: who acted, when, and
    what they did; `about` reads what it was done to from the action's result (`R`, what the function answers),
    which only that transaction knows."""

    actor: Actor
    action: str
    now: datetime
    about: Callable[[R], About]

    async def write(self, session: Session, result: R) -> None:
        """The action's last statement, once `result` is known."""
        target, reseller_id, details = self.about(result)
        await record(
            session,
            actor=self.actor,
            action=self.action,
            now=self.now,
            target=target,
            reseller_id=reseller_id,
            details=details,
        )


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
    """For what writes nothing else: a refused sign-in, a page read, a download."""
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
