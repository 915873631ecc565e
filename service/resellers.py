"""Resellers: registered by an admin, they log in with a client id and secret (OAuth2 client credentials).
An admin may disable one (its tokens are refused at once) and rotate its secret (the tokens issued before
are refused at once)."""

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import bindparam, case, func, insert, select, tuple_, update

from service import pagination
from service.audit import Pending
from service.auth import SecretChecks, hash_secret
from service.driver import Driver, Duplicate, Rows, Session, retried
from service.errors import N_, ResellerExists, ResellerNotFound, Unauthenticated
from service.models import Reseller, UtcDateTime
from service.pagination import Page
from service.ratelimit import Limiter, client_name

# Checked against when the client id is unknown, so that a miss costs as much time as a hit.
_DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class NewReseller:
    id: UUID
    name: str
    client_id: str
    client_secret: str


class ResellerRecord(NamedTuple):
    """What an admin sees of a reseller: never its secret, nor its hash. Also the row its statements read."""

    id: UUID
    name: str
    client_id: str
    created_at: datetime
    disabled_at: datetime | None
    previous_secret_until: datetime | None


@dataclass(frozen=True)
class RotatedSecret:
    reseller: ResellerRecord
    client_secret: str


@dataclass(frozen=True)
class Login:
    reseller_id: UUID
    tokens_valid_from: datetime | None

    def issued_at(self, now: datetime) -> datetime:
        """The instant its token is stamped with (`iat`): never before `tokens_valid_from`. `iat` counts whole
        seconds, so a rotation refuses tokens from the rest of its own second too (see `rotate_secret`); a token
        from the new secret within that second is stamped with the next whole second rather than refused."""
        return max(now, self.tokens_valid_from) if self.tokens_valid_from else now


class _AccessRow(NamedTuple):
    disabled_at: datetime | None
    tokens_valid_from: datetime | None


class _LoginRow(NamedTuple):
    id: UUID
    secret_hash: str
    disabled_at: datetime | None
    tokens_valid_from: datetime | None
    previous_secret_hash: str | None
    previous_secret_until: datetime | None


class _Exists(NamedTuple):
    id: UUID


_RECORD = select(
    Reseller.id,
    Reseller.name,
    Reseller.client_id,
    Reseller.created_at,
    Reseller.disabled_at,
    Reseller.previous_secret_until,
)
_FIND = Rows(_RECORD.where(Reseller.id == bindparam("id")), ResellerRecord)
# Read on every call with a reseller's token: built once.
_ACCESS = Rows(
    select(Reseller.disabled_at, Reseller.tokens_valid_from).where(Reseller.id == bindparam("id")), _AccessRow
)
_LOGIN = Rows(
    select(
        Reseller.id,
        Reseller.secret_hash,
        Reseller.disabled_at,
        Reseller.tokens_valid_from,
        Reseller.previous_secret_hash,
        Reseller.previous_secret_until,
    ).where(Reseller.client_id == bindparam("client_id")),
    _LoginRow,
)
_REGISTER = insert(Reseller).values(
    id=bindparam("id"), name=bindparam("name"), client_id=bindparam("client_id"), secret_hash=bindparam("secret_hash")
)
_DISABLE = (
    update(Reseller)
    .where(Reseller.id == bindparam("reseller_id"), Reseller.disabled_at.is_(None))
    .values(disabled_at=bindparam("now"))
)
_ENABLE = update(Reseller).where(Reseller.id == bindparam("reseller_id")).values(disabled_at=None)
# The secret being replaced is kept, with its end, only for a grace period (`until` in the future); `valid_from`
# moves only when there is none: an overlap is for rolling a secret out, not for one that leaked.
_ROTATE = (
    update(Reseller)
    .where(Reseller.id == bindparam("reseller_id"))
    .values(
        previous_secret_hash=case((bindparam("until", type_=UtcDateTime()).is_not(None), Reseller.secret_hash)),
        previous_secret_until=bindparam("until", type_=UtcDateTime()),
        secret_hash=bindparam("secret_hash"),
        tokens_valid_from=func.coalesce(bindparam("valid_from", type_=UtcDateTime()), Reseller.tokens_valid_from),
    )
)
_ALL = Rows(_RECORD.order_by(Reseller.name), ResellerRecord)
_EXISTS = Rows(select(Reseller.id).where(Reseller.id == bindparam("id")), _Exists)


async def register(*, driver: Driver, name: str, audit: Pending[NewReseller] | None = None) -> NewReseller:
    new = NewReseller(uuid.uuid4(), name, "rs_" + secrets.token_urlsafe(12), secrets.token_urlsafe(32))
    secret_hash = await asyncio.to_thread(hash_secret, new.client_secret)
    try:
        await _insert(driver=driver, new=new, secret_hash=secret_hash, audit=audit)
    except Duplicate as exc:
        raise ResellerExists() from exc
    return new


@retried
async def _insert(*, driver: Driver, new: NewReseller, secret_hash: str, audit: Pending[NewReseller] | None) -> None:
    values = {"id": new.id, "name": new.name, "client_id": new.client_id, "secret_hash": secret_hash}
    async with driver.transaction() as session:
        await session.execute(_REGISTER, values)
        if audit is not None:
            await audit.write(session, new)


async def authenticate(
    *,
    driver: Driver,
    limiter: Limiter,
    wide_limit: int,
    checks: SecretChecks,
    client: str,
    client_id: str,
    client_secret: str,
    now: datetime,
) -> Login:
    """The reseller's login when the credentials are right (its secret, or the one before it during a rotation's
    grace period) and it is not disabled; `Unauthenticated` otherwise, the same answer in every case, so that a caller
    learns nothing of which it was.

    Failures are limited before any secret is hashed: per (client address, client id) at the limiter's limit,
    so that a stranger who knows a client id locks out only its own address; and at `wide_limit`, per client
    id from every address and per address for every client id. A client id's counters are named with its last
    secret rotation (when its tokens are valid from, and when a grace period ends): rotating the secret, with a
    grace period or without, starts them again."""
    row = await driver.first(_LOGIN, {"client_id": client_id})
    marks = (row.tokens_valid_from, row.previous_secret_until) if row else (None, None)
    rotation = "/".join(str(mark.timestamp() if mark else 0) for mark in marks)
    address, reseller = client_name(client), f"id:{client_id}@{rotation}"
    limits = {f"{address}/{reseller}": limiter.limit, reseller: wide_limit, address: wide_limit}
    async with limiter.attempt(limits=limits, failures=(Unauthenticated,)):
        stored = row.secret_hash if row else _DUMMY_HASH
        right = await checks.verify(client_secret, stored)
        if not right and row is not None and row.previous_secret_hash and row.previous_secret_until:
            right = row.previous_secret_until > now and await checks.verify(client_secret, row.previous_secret_hash)
        if not right or row is None or row.disabled_at is not None:
            raise Unauthenticated(N_("Unknown client or wrong secret"))
        return Login(row.id, row.tokens_valid_from)


async def check_access(*, driver: Driver, reseller_id: UUID, issued_at: int | None) -> None:
    """A reseller's token is good only while the reseller exists and is not disabled, and only if it was issued
    (`iat`, whole seconds) no earlier than the last secret rotation allows: `Unauthenticated` otherwise."""
    row = await driver.first(_ACCESS, {"id": reseller_id})
    if row is None:
        raise Unauthenticated(N_("The access token names no known reseller"))
    if row.disabled_at is not None:
        raise Unauthenticated(N_("The reseller is disabled"))
    valid_from = row.tokens_valid_from
    if valid_from is not None and (issued_at is None or issued_at < valid_from.timestamp()):
        raise Unauthenticated(N_("The access token was issued before the client secret was rotated"))


async def _find(session: Session, reseller_id: UUID) -> ResellerRecord:
    row = await session.first(_FIND, {"id": reseller_id})
    if row is None:
        raise ResellerNotFound()
    return row


async def list_all(*, driver: Driver) -> list[ResellerRecord]:
    """Every reseller, by name (a few hundred at most: Smartec's partners)."""
    async with driver.reading() as session:
        return await session.all(_ALL, {})


async def get(*, driver: Driver, reseller_id: UUID) -> ResellerRecord:
    async with driver.reading() as session:
        return await _find(session, reseller_id)


async def list_resellers(*, driver: Driver, cursor: str | None = None, limit: int = 100) -> Page[ResellerRecord]:
    """A page of resellers in the order they were registered."""
    statement = _RECORD.order_by(Reseller.created_at, Reseller.id).limit(limit + 1)
    if cursor is not None:
        after = pagination.decode(cursor, datetime, UUID)
        statement = statement.where(tuple_(Reseller.created_at, Reseller.id) > tuple_(*after))
    async with driver.reading() as session:
        rows = await session.all(Rows(statement, ResellerRecord), {})
    return pagination.page_of(rows, limit, lambda row: (row.created_at, row.id))


@retried
async def disable(
    *, driver: Driver, reseller_id: UUID, now: datetime, audit: Pending[ResellerRecord] | None = None
) -> ResellerRecord:
    """Its tokens are refused from now on and it gets no new ones. Disabling it again keeps the first instant."""
    async with driver.transaction() as session:
        await session.execute(_DISABLE, {"reseller_id": reseller_id, "now": now})
        return await _found(session, reseller_id, audit)


@retried
async def enable(*, driver: Driver, reseller_id: UUID, audit: Pending[ResellerRecord] | None = None) -> ResellerRecord:
    """It may get tokens again, and its unexpired ones work again."""
    async with driver.transaction() as session:
        await session.execute(_ENABLE, {"reseller_id": reseller_id})
        return await _found(session, reseller_id, audit)


async def _found(session: Session, reseller_id: UUID, audit: Pending[ResellerRecord] | None) -> ResellerRecord:
    """The reseller as a change left it, the change's audit entry written."""
    found = await _find(session, reseller_id)
    if audit is not None:
        await audit.write(session, found)
    return found


async def rotate_secret(
    *,
    driver: Driver,
    reseller_id: UUID,
    now: datetime,
    grace: timedelta = timedelta(0),
    audit: Pending[RotatedSecret] | None = None,
) -> RotatedSecret:
    """A new client secret, shown once. Without a grace period the old one stops working at once, and so does every
    token issued before now (the usual reason is a leaked secret): `iat` counts whole seconds, so tokens are valid
    from the next whole second, as one issued earlier in this second could be the leaked secret's. With one, the old
    secret still logs in until `now + grace` (a reseller rolls the new one out to its servers meanwhile), and the
    tokens already issued run out as usual; a rotation replaces any grace period before it."""
    client_secret = secrets.token_urlsafe(32)
    secret_hash = await asyncio.to_thread(hash_secret, client_secret)
    overlap = grace > timedelta(0)
    values: dict[str, object] = {
        "secret_hash": secret_hash,
        "valid_from": None if overlap else now.replace(microsecond=0) + timedelta(seconds=1),
        "until": now + grace if overlap else None,
    }
    return await _store_secret(
        driver=driver, reseller_id=reseller_id, values=values, client_secret=client_secret, audit=audit
    )


@retried
async def _store_secret(
    *,
    driver: Driver,
    reseller_id: UUID,
    values: dict[str, object],
    client_secret: str,
    audit: Pending[RotatedSecret] | None,
) -> RotatedSecret:
    async with driver.transaction() as session:
        await session.execute(_ROTATE, {"reseller_id": reseller_id, **values})
        rotated = RotatedSecret(await _find(session, reseller_id), client_secret)
        if audit is not None:
            await audit.write(session, rotated)
    return rotated


async def require(session: Session, reseller_id: UUID | None) -> None:
    """Inside another transaction: the named reseller exists (no name, nothing to check)."""
    if reseller_id is not None and await session.first(_EXISTS, {"id": reseller_id}) is None:
        raise ResellerNotFound()
