"""License keys: issuing them (the plaintext is returned once), listing their metadata, revoking them."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import bindparam, select, update

from service import keyformat, pagination, resellers, webhooks
from service.audit import Pending
from service.auth import Principal
from service.driver import Driver, Rows, retried
from service.errors import N_, KeyAlreadyUsed, KeyNotFound
from service.models import LicenseKey
from service.pagination import Page


@dataclass(frozen=True)
class IssuedKey:
    id: UUID
    key: str
    prefix: str


class KeyInfo(NamedTuple):
    """A key's metadata (never the key): also the row its statements read (`_INFO_COLUMNS`)."""

    id: UUID
    prefix: str
    reseller_id: UUID | None
    status: str
    activation_id: UUID | None
    created_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


_INFO_COLUMNS = (
    LicenseKey.id,
    LicenseKey.prefix,
    LicenseKey.reseller_id,
    LicenseKey.status,
    LicenseKey.activation_id,
    LicenseKey.created_at,
    LicenseKey.used_at,
    LicenseKey.revoked_at,
)


@retried
async def issue(
    *,
    driver: Driver,
    count: int,
    secret: bytes,
    reseller_id: UUID | None = None,
    audit: Pending[list[IssuedKey]] | None = None,
) -> list[IssuedKey]:
    issued = [
        IssuedKey(uuid.uuid4(), key, keyformat.display_prefix(key))
        for key in (keyformat.generate() for _ in range(count))
    ]
    rows = [(k.id, keyformat.digest(k.key, secret), k.prefix, reseller_id, "issued") for k in issued]
    async with driver.transaction() as session:
        await resellers.require(session, reseller_id)
        await session.copy(LicenseKey, _COLUMNS, rows)
        if audit is not None:
            await audit.write(session, issued)
    return issued


_COLUMNS = ("id", "digest", "prefix", "reseller_id", "status")


async def list_keys(
    *,
    driver: Driver,
    principal: Principal,
    status: str | None = None,
    reseller_id: UUID | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[KeyInfo]:
    """A page of key metadata in id order."""
    statement = select(*_INFO_COLUMNS).order_by(LicenseKey.id).limit(limit + 1)  # one more: whether more follow
    if reseller_id is not None:
        principal.require_owner(reseller_id)
    owner = reseller_id if principal.is_admin else principal.reseller_id
    if owner is not None:
        statement = statement.where(LicenseKey.reseller_id == owner)
    if status is not None:
        statement = statement.where(LicenseKey.status == status)
    if cursor is not None:
        (after,) = pagination.decode(cursor, UUID)
        statement = statement.where(LicenseKey.id > after)
    async with driver.reading() as session:
        rows = await session.all(Rows(statement, KeyInfo), {})
    return pagination.page_of(rows, limit, lambda row: (row.id,))


_REVOKE = Rows(
    update(LicenseKey)
    .where(LicenseKey.id == bindparam("key_id"), LicenseKey.status == "issued")
    .values(status="revoked", revoked_at=bindparam("now"))
    .returning(*_INFO_COLUMNS),
    KeyInfo,
)
_INFO = Rows(select(*_INFO_COLUMNS).where(LicenseKey.id == bindparam("id")), KeyInfo)


async def info(*, driver: Driver, key_id: UUID) -> KeyInfo:
    row = await driver.first(_INFO, {"id": key_id})
    if row is None:
        raise KeyNotFound()
    return row


async def get(*, driver: Driver, principal: Principal, key_id: UUID) -> KeyInfo:
    """An admin's: any key; a reseller's: its own (another's is answered as one that does not exist)."""
    found = await info(driver=driver, key_id=key_id)
    if not (principal.is_admin or found.reseller_id == principal.reseller_id):
        raise KeyNotFound()
    return found


@retried
async def revoke(*, driver: Driver, key_id: UUID, now: datetime, audit: Pending[KeyInfo] | None = None) -> KeyInfo:
    """Revoke an unused key; revoking a revoked key changes nothing. It locks that one key only, so it keeps the
    order in which other paths lock keys (by id) whatever it waits on."""
    async with driver.transaction() as session:
        row = await session.first(_REVOKE, {"key_id": key_id, "now": now})
        if row is not None:
            await webhooks.emit(
                session, webhooks.Event.of(webhooks.KEY_REVOKED, row, reseller_id=row.reseller_id, now=now)
            )
        else:
            row = await session.first(_INFO, {"id": key_id})
            if row is None:
                raise KeyNotFound()
            if row.status == "used":
                raise KeyAlreadyUsed(N_("A used key cannot be revoked"))
        if audit is not None:
            await audit.write(session, row)
    return row
