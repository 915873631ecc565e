"""Who is calling: access tokens (JWT, HS256 only) and the client secrets resellers log in with."""

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from jose import JWTError, jwt

from service.errors import N_, Forbidden, Unauthenticated, Unavailable
from service.settings import Settings

ALGORITHMS = ["HS256"]  # the allow-list: a token naming any other algorithm is refused
Role = Literal["admin", "reseller"]
ROLES: tuple[Role, ...] = ("admin", "reseller")

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Principal:
    role: Role
    subject: str
    issued_at: int | None = None  # the token's `iat`: a reseller's tokens from before a secret rotation are refused

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def reseller_id(self) -> UUID | None:
        return UUID(self.subject) if self.role == "reseller" else None

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden(N_("This operation is for administrators"))

    def require_owner(self, owner_id: UUID | None) -> None:
        """Admins see everything; a reseller only what it owns."""
        if not self.is_admin and owner_id != self.reseller_id:
            raise Forbidden(N_("This resource belongs to someone else"))


@dataclass(frozen=True)
class TokenSettings:
    secret: str
    issuer: str
    audience: str

    @classmethod
    def of(cls, settings: Settings) -> "TokenSettings":
        return cls(settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience)


def issue_token(settings: TokenSettings, role: Role, subject: str, now: datetime, lifetime: timedelta) -> str:
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": subject,
        "role": role,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, settings.secret, algorithm=ALGORITHMS[0])


def verify_token(settings: TokenSettings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.secret,
            algorithms=ALGORITHMS,
            audience=settings.audience,
            issuer=settings.issuer,
            options={"require_exp": True, "require_iss": True, "require_aud": True, "require_sub": True},
        )
    except JWTError as exc:
        raise Unauthenticated(N_("The access token is missing, expired or not valid")) from exc
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthenticated(N_("The access token names no known role"))
    principal = Principal(role=role, subject=claims["sub"], issued_at=claims.get("iat"))
    try:
        principal.reseller_id  # noqa: B018 - a reseller's subject must be its id
    except ValueError as exc:
        raise Unauthenticated(N_("The access token names no known reseller")) from exc
    return principal


def hash_secret(secret: str) -> str:
    """A slow, salted hash (scrypt) of a client secret: what the database keeps."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    _scheme, salt, expected = stored.split("$")
    digest = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), **_SCRYPT)
    return hmac.compare_digest(digest.hex(), expected)


class SecretChecks:
    """Client-secret checks, each ~60 ms of a core and 16 MiB (scrypt): at most `concurrency` at once in this
    process, in a worker thread, and at most `queue` more waiting. A flood of logins, whoever sends it, then
    cannot take the cores that activations and support reads run on; past the queue it is answered at once."""

    def __init__(self, *, concurrency: int, queue: int):
        self._slots = asyncio.Semaphore(concurrency)
        self._admitted = 0
        self._most = concurrency + queue

    async def verify(self, secret: str, stored: str) -> bool:
        if self._admitted >= self._most:
            raise Unavailable(N_("Too many logins at once; try again shortly"))
        self._admitted += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(verify_secret, secret, stored)
        finally:
            self._admitted -= 1
