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

from sqlalchemy import bindparam, insert, select, update

from service.auth import SecretChecks, hash_secret
from service.driver import Driver, Duplicate, Rows, Session, retried
from service.errors import N_, ResellerExists, ResellerNotFound, Unauthenticated
from service.models import Reseller
from service.ratelimit import Limiter, client_name

# Checked against when the client id is unknown, so that a miss costs as much time as a hit.
_DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class NewReseller:
    id: UUID
    name: str
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class ResellerRecord:
    """What an admin sees of a reseller: never its secret, nor its hash."""

    id: UUID
    name: str
    client_id: str
    created_at: datetime
    disabled_at: datetime | None


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


class _RecordRow(NamedTuple):
    id: UUID
    name: str
    client_id: str
    created_at: datetime
    disabled_at: datetime | None


class _AccessRow(NamedTuple):
    disabled_at: datetime | None
    tokens_valid_from: datetime | None


class _LoginRow(NamedTuple):
    id: UUID
    secret_hash: str
    disabled_at: datetime | None
    tokens_valid_from: datetime | None


class _Exists(NamedTuple):
    id: UUID


_FIND = Rows(
    select(Reseller.id, Reseller.name, Reseller.client_id, Reseller.created_at, Reseller.disabled_at).where(
        Reseller.id == bindparam("id")
    ),
    _RecordRow,
)
# Read on every call with a reseller's token: built once.
_ACCESS = Rows(
    select(Reseller.disabled_at, Reseller.tokens_valid_from).where(Reseller.id == bindparam("id")), _AccessRow
)
_LOGIN = Rows(
    select(Reseller.id, Reseller.secret_hash, Reseller.disabled_at, Reseller.tokens_valid_from).where(
        Reseller.client_id == bindparam("client_id")
    ),
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
_ROTATE = (
    update(Reseller)
    .where(Reseller.id == bindparam("reseller_id"))
    .values(secret_hash=bindparam("secret_hash"), tokens_valid_from=bindparam("valid_from"))
)
_ALL = Rows(
    select(Reseller.id, Reseller.name, Reseller.client_id, Reseller.created_at, Reseller.disabled_at).order_by(
        Reseller.name
    ),
    _RecordRow,
)
_EXISTS = Rows(select(Reseller.id).where(Reseller.id == bindparam("id")), _Exists)


async def register(*, driver: Driver, name: str) -> NewReseller:
    reseller_id = uuid.uuid4()
    client_id = "rs_" + secrets.token_urlsafe(12)
    client_secret = secrets.token_urlsafe(32)
    secret_hash = await asyncio.to_thread(hash_secret, client_secret)
    values = {"id": reseller_id, "name": name, "client_id": client_id, "secret_hash": secret_hash}
    try:
        await _insert(driver=driver, values=values)
    except Duplicate as exc:
        raise ResellerExists() from exc
    return NewReseller(reseller_id, name, client_id, client_secret)


@retried
async def _insert(*, driver: Driver, values: dict[str, object]) -> None:
    async with driver.transaction() as session:
        await session.execute(_REGISTER, values)


async def authenticate(
    *,
    driver: Driver,
    limiter: Limiter,
    wide_limit: int,
    checks: SecretChecks,
    client: str,
    client_id: str,
    client_secret: str,
) -> Login:
    """The reseller's login when the credentials are right and it is not disabled; `Unauthenticated`
    otherwise, the same answer in every case, so that a caller learns nothing of which it was.

    Failures are limited before any secret is hashed: per (client address, client id) at the limiter's limit,
    so that a stranger who knows a client id locks out only its own address; and at `wide_limit`, per client
    id from every address and per address for every client id. A client id's counters are named with its last
    secret rotation: rotating the secret starts them again."""
    row = await driver.first(_LOGIN, {"client_id": client_id})
    rotation = row.tokens_valid_from.timestamp() if row and row.tokens_valid_from else 0
    address, reseller = client_name(client), f"id:{client_id}@{rotation}"
    limits = {f"{address}/{reseller}": limiter.limit, reseller: wide_limit, address: wide_limit}
    async with limiter.attempt(limits=limits, failures=(Unauthenticated,)):
        stored = row.secret_hash if row else _DUMMY_HASH
        if not await checks.verify(client_secret, stored) or row is None or row.disabled_at is not None:
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
    return ResellerRecord(**row._asdict())


async def list_all(*, driver: Driver) -> list[ResellerRecord]:
    """Every reseller, by name (a few hundred at most: Smartec's partners)."""
    async with driver.reading() as session:
        return [ResellerRecord(**row._asdict()) for row in await session.all(_ALL, {})]


async def get(*, driver: Driver, reseller_id: UUID) -> ResellerRecord:
    async with driver.reading() as session:
        return await _find(session, reseller_id)


@retried
async def disable(*, driver: Driver, reseller_id: UUID, now: datetime) -> ResellerRecord:
    """Its tokens are refused from now on and it gets no new ones. Disabling it again keeps the first instant."""
    async with driver.transaction() as session:
        await session.execute(_DISABLE, {"reseller_id": reseller_id, "now": now})
        return await _find(session, reseller_id)


@retried
async def enable(*, driver: Driver, reseller_id: UUID) -> ResellerRecord:
    """It may get tokens again, and its unexpired ones work again."""
    async with driver.transaction() as session:
        await session.execute(_ENABLE, {"reseller_id": reseller_id})
        return await _find(session, reseller_id)


async def rotate_secret(*, driver: Driver, reseller_id: UUID, now: datetime) -> RotatedSecret:
    """A new client secret, shown once; the old one stops working at once, and so does every token issued
    before now (a rotation is usually because the secret leaked). `iat` counts whole seconds, so tokens are
    valid from the next whole second: one issued earlier in this second could be the leaked secret's."""
    client_secret = secrets.token_urlsafe(32)
    secret_hash = await asyncio.to_thread(hash_secret, client_secret)
    valid_from = now.replace(microsecond=0) + timedelta(seconds=1)
    return RotatedSecret(
        await _store_secret(driver=driver, reseller_id=reseller_id, secret_hash=secret_hash, valid_from=valid_from),
        client_secret,
    )


@retried
async def _store_secret(*, driver: Driver, reseller_id: UUID, secret_hash: str, valid_from: datetime) -> ResellerRecord:
    async with driver.transaction() as session:
        await session.execute(
            _ROTATE, {"reseller_id": reseller_id, "secret_hash": secret_hash, "valid_from": valid_from}
        )
        return await _find(session, reseller_id)


async def require(session: Session, reseller_id: UUID | None) -> None:
    """Inside another transaction: the named reseller exists (no name, nothing to check)."""
    if reseller_id is not None and await session.first(_EXISTS, {"id": reseller_id}) is None:
        raise ResellerNotFound()
