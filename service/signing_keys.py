"""The deployment's signing keys: one key set, kept in the database and shared by every process.

Exactly one key signs at a time (`SigningKey.signing`, unique); a rotation retires it and makes a new one. A retired
key stays published in the JWKS while a certificate it signed may still be valid: for the certificates' lifetime,
plus the time other processes may still sign with it before they reload the key set. The private keys are stored
encrypted (Fernet) under a key derived from `CERTIFICATE_KEY_SECRET`.

A deployment may give its key as `CERTIFICATE_PRIVATE_KEY` instead: that key alone signs, and is not stored.

Each process keeps the key set in memory (`SigningKeys`) and reads it again every `SIGNING_KEYS_RELOAD_SECONDS`,
so that a rotation reaches every process within that time, and a certificate costs no read.
"""

import asyncio
import base64
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import bindparam, insert, or_, select, update

from service.certificates import CertificateSigner, generate_private_key
from service.clock import Clock
from service.driver import Contended, Driver, Duplicate, Rows, retried
from service.models import SigningKey


@dataclass(frozen=True)
class KeySet:
    signer: CertificateSigner
    """The key that signs now."""
    jwks: dict
    """The JSON Web Key Set: the signing key and every retired key whose certificates may still be valid."""


def _cipher(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"timex-licensing signing keys").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


class _Published(NamedTuple):
    private_key: bytes
    signing: bool | None


class _Retired(NamedTuple):
    kid: str


_PUBLISHED = Rows(
    select(SigningKey.private_key, SigningKey.signing)
    .where(or_(SigningKey.signing.is_(True), SigningKey.retired_at > bindparam("since")))
    .order_by(SigningKey.id.desc()),
    _Published,
)
_NEW_KEY = insert(SigningKey).values(
    kid=bindparam("kid"), private_key=bindparam("private_key"), signing=True, created_at=bindparam("now")
)
_RETIRE = Rows(
    update(SigningKey)
    .where(SigningKey.signing.is_(True))
    .values(signing=None, retired_at=bindparam("now"))
    .returning(SigningKey.kid),
    _Retired,
)


class SigningKeys:
    """The process's copy of the key set: read on first use, then again once `reload` has passed."""

    def __init__(
        self,
        *,
        driver: Driver,
        clock: Clock,
        issuer: str,
        lifetime: timedelta,
        reload: timedelta,
        secret: str,
        private_key_pem: str | None = None,
    ):
        self._driver = driver
        self._clock = clock
        self._issuer = issuer
        self._lifetime = lifetime
        self._reload_seconds = reload.total_seconds()
        self._secret = secret
        self._lock = asyncio.Lock()
        self._fresh_until = 0.0
        self._current: KeySet | None = None
        if private_key_pem is not None:
            signer = CertificateSigner(private_key_pem, issuer, lifetime)
            self._current = KeySet(signer, {"keys": [signer.public_jwk]})
            self._fresh_until = float("inf")

    @property
    def max_age(self) -> int:
        """How long a copy of the JWKS may be kept: a process picks up a rotation within as long."""
        return int(self._reload_seconds)

    async def current(self) -> KeySet:
        if time.monotonic() < self._fresh_until and self._current is not None:
            return self._current
        async with self._lock:  # one read per process, however many requests find the copy stale at once
            if time.monotonic() >= self._fresh_until or self._current is None:
                self._current = await load(
                    driver=self._driver,
                    secret=self._secret,
                    issuer=self._issuer,
                    lifetime=self._lifetime,
                    # A retired key may still sign in another process until that process reloads.
                    retained=self._lifetime + timedelta(seconds=self._reload_seconds),
                    now=self._clock.now(),
                )
                self._fresh_until = time.monotonic() + self._reload_seconds
        return self._current


async def load(
    *, driver: Driver, secret: str, issuer: str, lifetime: timedelta, retained: timedelta, now: datetime
) -> KeySet:
    """The published keys, the signing one first; on an empty table, a first signing key is made. Processes
    that start at once each try to make it: the unique `signing` lets one succeed, and the others read its key."""
    cipher = _cipher(secret)
    rows = await _published(driver, now - retained)
    if not rows or rows[0].signing is not True:
        with suppress(Duplicate):  # another process made it first
            await _add_signing_key(driver=driver, cipher=cipher, now=now)
        rows = await _published(driver, now - retained)
    try:
        pems = [cipher.decrypt(row.private_key).decode() for row in rows]
    except InvalidToken:
        raise RuntimeError("CERTIFICATE_KEY_SECRET does not decrypt the stored signing keys") from None
    signers = [CertificateSigner(pem, issuer, lifetime) for pem in pems]
    return KeySet(signers[0], {"keys": [signer.public_jwk for signer in signers]})


async def _published(driver: Driver, since: datetime) -> list[_Published]:
    """Newest first: the signing key, which is always the newest (a key is made signing, and never signs again
    once retired), then the retired ones."""
    async with driver.reading() as session:
        return await session.all(_PUBLISHED, {"since": since})


def _new_key(cipher: Fernet, now: datetime) -> dict:
    """A new key's row, its private key encrypted: the parameters of `_NEW_KEY`."""
    pem = generate_private_key()
    kid = CertificateSigner(pem, issuer="", lifetime=timedelta()).kid
    return {"kid": kid, "private_key": cipher.encrypt(pem.encode()), "now": now}


async def _add_signing_key(*, driver: Driver, cipher: Fernet, now: datetime) -> None:
    async with driver.transaction() as session:
        await session.execute(_NEW_KEY, _new_key(cipher, now))


@dataclass(frozen=True)
class Rotation:
    retired: str | None
    signing: str


@retried
async def rotate(*, driver: Driver, secret: str, now: datetime) -> Rotation:
    """Retire the signing key and make a new one, in one transaction. Two rotations at once: the second to
    commit finds the first's new key signing, and is made again (it retires that one)."""
    new_key = _new_key(_cipher(secret), now)
    try:
        async with driver.transaction() as session:
            retired = await session.first(_RETIRE, {"now": now})
            await session.execute(_NEW_KEY, new_key)
    except Duplicate as exc:
        raise Contended("another rotation made a signing key first") from exc
    return Rotation(None if retired is None else retired.kid, new_key["kid"])
