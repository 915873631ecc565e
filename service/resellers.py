"""Resellers: registered by an admin, they log in with a client id and secret (OAuth2 client credentials)."""

import asyncio
import secrets
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.auth import SecretChecks, hash_secret
from service.db import transaction
from service.errors import ResellerExists, ResellerNotFound, Unauthenticated
from service.models import Reseller
from service.ratelimit import Limiter, client_key

# Checked against when the client id is unknown, so that a miss costs as much time as a hit.
_DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class NewReseller:
    id: UUID
    name: str
    client_id: str
    client_secret: str


async def register(engine: AsyncEngine, name: str) -> NewReseller:
    client_id = "rs_" + secrets.token_urlsafe(12)
    client_secret = secrets.token_urlsafe(32)
    secret_hash = await asyncio.to_thread(hash_secret, client_secret)
    try:
        async with transaction(engine) as conn:
            reseller_id = await conn.scalar(
                insert(Reseller)
                .values(name=name, client_id=client_id, secret_hash=secret_hash)
                .returning(Reseller.id)
            )
    except IntegrityError as exc:
        raise ResellerExists() from exc
    return NewReseller(reseller_id, name, client_id, client_secret)


async def authenticate(*, engine: AsyncEngine, limiter: Limiter, checks: SecretChecks, client: str, client_id: str,
                       client_secret: str) -> UUID:
    """The reseller's id when the credentials are right; `Unauthenticated` otherwise. Failures are limited per
    client address and per client id, before any secret is hashed."""
    async with limiter.attempt(names=[f"client:{client_key(client)}", f"id:{client_id}"],
                               failures=(Unauthenticated,)):
        async with transaction(engine) as conn:
            row = (await conn.execute(
                select(Reseller.id, Reseller.secret_hash).where(Reseller.client_id == client_id)
            )).first()
        stored = row.secret_hash if row else _DUMMY_HASH
        if not await checks.verify(client_secret, stored) or row is None:
            raise Unauthenticated("Unknown client or wrong secret")
        return row.id


async def require(conn: AsyncConnection, reseller_id: UUID | None) -> None:
    """Inside another transaction: the named reseller exists (no name, nothing to check)."""
    if reseller_id is not None and await conn.scalar(select(Reseller.id).where(Reseller.id == reseller_id)) is None:
        raise ResellerNotFound()
