"""Idempotency keys: a retried request that creates something gets the first answer back, not a second creation.

A caller sends `Idempotency-Key` with a POST; the key is its own (scoped per caller: one caller cannot replay
another's). Across every process on the database:

1. The first request claims the key: its row is inserted in a transaction of its own, committed before any work,
   so that of two concurrent requests exactly one claims it (the other's insert is a `Duplicate`).
2. It runs, and its answer is stored on the row, encrypted (answers hold plaintext keys and client secrets).
3. The same key with the same request (method, path, body; the caller is the scope) then answers that answer
   again, byte for byte, until the row expires; with another request it is `IdempotencyKeyReused`; while the first
   is still running, `IdempotencyKeyInFlight`.

A request that fails in a way worth retrying (`Unavailable`, `RateLimited`, a bug) releases its claim, so that the
retry runs afresh. A process that dies between its claim and its answer leaves the claim behind: after
`CLAIM_TIMEOUT` another request with the same key takes it over (so a request must not run longer: one that does
still answers its client, but its answer is not kept, the overtaking request's is). Expired rows are purged by each
new claim of their caller, and all of them by `timex-licensing purge-idempotency-keys`.
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import UUID, uuid4

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import bindparam, delete, insert, select, update

from service.driver import Driver, Duplicate, Rows, retried
from service.errors import N_, IdempotencyKeyInFlight, IdempotencyKeyReused, InvalidRequest, Unavailable
from service.models import IdempotencyKey

CLAIM_TIMEOUT = timedelta(seconds=60)
"""A claim this old with no answer is abandoned (its process died): well above any request's run, since issuing
100,000 keys takes seconds, and short enough that a client retrying after a crash is not refused for long."""

_KEY = re.compile(r"[\x20-\x7e]{1,255}")  # printable ASCII
_CLAIM_ATTEMPTS = 3  # a claim released or expired just as it was read is claimed again, this often at most


@dataclass(frozen=True)
class Attempt:
    """A request under an idempotency key: whose key, which key, and what request."""

    scope: str
    key: str
    fingerprint: bytes


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Claim:
    """The right to run a request and store its answer: the row's, while its `claim` is still this id."""

    attempt: Attempt
    id: UUID


def attempt(*, scope: str, key: str, method: str, target: str, body: bytes) -> Attempt:
    """The attempt of a request (`target`: its path and query); a key that is not 1 to 255 printable ASCII
    characters is refused. A JSON body counts by its content, not its spelling (spaces, order of names)."""
    if not _KEY.fullmatch(key):
        raise InvalidRequest(N_("Idempotency-Key must be 1 to 255 printable ASCII characters"))
    try:
        content = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode() if body else b""
    except ValueError:
        content = body
    fingerprint = hashlib.sha256()
    for part in (scope.encode(), method.encode(), target.encode(), content):
        fingerprint.update(len(part).to_bytes(8, "big") + part)
    return Attempt(scope, key, fingerprint.digest())


class Sealer:
    """AES-GCM under a key derived (HKDF) from a secret setting: a stored answer can be read back only with that
    secret, and only on its own row (scope and key are its associated data)."""

    def __init__(self, secret: bytes):
        self._aead = AESGCM(HKDF(SHA256(), 32, salt=None, info=b"timex-licensing idempotent answers").derive(secret))

    def seal(self, attempt: Attempt, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, _associated(attempt))

    def open(self, attempt: Attempt, sealed: bytes) -> bytes:
        return self._aead.decrypt(sealed[:12], sealed[12:], _associated(attempt))


def _associated(attempt: Attempt) -> bytes:
    return json.dumps([attempt.scope, attempt.key]).encode()


# Parameters are not named as columns: SQLAlchemy keeps those names for the values an insert or update sets.
_WHERE_KEY = (IdempotencyKey.scope == bindparam("of_scope"), IdempotencyKey.key == bindparam("of_key"))
_PURGE_EXPIRED_OF_SCOPE = delete(IdempotencyKey).where(
    IdempotencyKey.scope == bindparam("of_scope"), IdempotencyKey.expires_at <= bindparam("now")
)
_CLAIM = insert(IdempotencyKey).values(
    scope=bindparam("of_scope"),
    key=bindparam("of_key"),
    fingerprint=bindparam("of_request"),
    claim=bindparam("claim_id"),
    claimed_at=bindparam("now"),
    expires_at=bindparam("expiry"),
)


class _Stored(NamedTuple):
    fingerprint: bytes
    claim: UUID
    claimed_at: datetime
    status: int | None
    content_type: str | None
    body: bytes | None


_READ = Rows(
    select(
        IdempotencyKey.fingerprint,
        IdempotencyKey.claim,
        IdempotencyKey.claimed_at,
        IdempotencyKey.status,
        IdempotencyKey.content_type,
        IdempotencyKey.body,
    ).where(*_WHERE_KEY, IdempotencyKey.expires_at > bindparam("now")),
    _Stored,
)
_TAKE_OVER = (
    update(IdempotencyKey)
    .where(*_WHERE_KEY, IdempotencyKey.claim == bindparam("abandoned"), IdempotencyKey.status.is_(None))
    .values(claim=bindparam("claim_id"), claimed_at=bindparam("now"))
)
_STORE = (
    update(IdempotencyKey)
    .where(*_WHERE_KEY, IdempotencyKey.claim == bindparam("claim_id"))
    .values(status=bindparam("answer_status"), content_type=bindparam("answer_type"), body=bindparam("sealed"))
)
_RELEASE = delete(IdempotencyKey).where(*_WHERE_KEY, IdempotencyKey.claim == bindparam("claim_id"))
_PURGE_EXPIRED = delete(IdempotencyKey).where(IdempotencyKey.expires_at <= bindparam("now"))


@retried
async def claim(*, driver: Driver, attempt: Attempt, now: datetime, ttl: timedelta, sealer: Sealer) -> Claim | Answer:
    """The claim of a key not used yet (or expired, or abandoned): the caller runs the request, then `store`s its
    answer or `release`s the claim. Or the answer stored for this very request, to answer again."""
    where = {"of_scope": attempt.scope, "of_key": attempt.key, "now": now}
    for _ in range(_CLAIM_ATTEMPTS):
        claim = Claim(attempt, uuid4())
        try:
            async with driver.transaction() as session:
                await session.execute(_PURGE_EXPIRED_OF_SCOPE, where)
                await session.execute(
                    _CLAIM, {**where, "of_request": attempt.fingerprint, "claim_id": claim.id, "expiry": now + ttl}
                )
            return claim
        except Duplicate:
            pass
        row = await driver.first(_READ, where)
        if row is None:
            continue  # released or expired since: claim it again
        if row.fingerprint != attempt.fingerprint:
            raise IdempotencyKeyReused()
        if row.status is not None:
            assert row.content_type is not None and row.body is not None, "an answer is stored whole (`_STORE`)"
            return Answer(row.status, row.content_type, sealer.open(attempt, row.body))
        if row.claimed_at > now - CLAIM_TIMEOUT:
            raise IdempotencyKeyInFlight()
        async with driver.single_write() as session:
            if await session.execute(_TAKE_OVER, {**where, "abandoned": row.claim, "claim_id": claim.id}):
                return claim
    raise Unavailable()


async def store(*, driver: Driver, claim: Claim, answer: Answer, sealer: Sealer) -> None:
    """Keep the answer for the claim's request; nothing if the claim was taken over meanwhile (the request that
    took it over stores its own)."""
    attempt = claim.attempt
    async with driver.single_write() as session:
        await session.execute(
            _STORE,
            {
                "of_scope": attempt.scope,
                "of_key": attempt.key,
                "claim_id": claim.id,
                "answer_status": answer.status,
                "answer_type": answer.content_type,
                "sealed": sealer.seal(attempt, answer.body),
            },
        )


async def release(*, driver: Driver, claim: Claim) -> None:
    """Give the key up without an answer: the next request with it runs afresh."""
    async with driver.single_write() as session:
        await session.execute(
            _RELEASE, {"of_scope": claim.attempt.scope, "of_key": claim.attempt.key, "claim_id": claim.id}
        )


async def purge(*, driver: Driver, now: datetime) -> int:
    """Delete every expired key and its answer; how many."""
    async with driver.single_write() as session:
        return await session.execute(_PURGE_EXPIRED, {"now": now})
