"""The cabinet's people and their sign-ins: users (staff, or acting for one reseller), invited by an admin with
a one-time setup link, signing in with a password, each signed-in browser a session stored here.

Passwords are hashed as client secrets are (scrypt, `auth.hash_secret`) and checked the same way: in a worker
thread, a few at a time (`auth.SecretChecks`), after the limiter has admitted the attempt. Failed sign-ins are
limited per (client address, username): a stranger guessing elsewhere locks nobody out.

A session is good while its user and the user's reseller are enabled, it was used within the idle time, and
its absolute lifetime has not passed: all checked on every request, so that disabling a user or a reseller
refuses its open sessions at once (disabling a user also deletes them).
"""

import asyncio
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import bindparam, delete, insert, select, tuple_, update

from service import audit, pagination, resellers, totp
from service.audit import Actor
from service.auth import Principal, Role, SecretChecks, hash_secret
from service.driver import Driver, Duplicate, Rows, Session, retried
from service.errors import N_, InvalidRequest, SetupLinkInvalid, Unauthenticated, UserExists, UserNotFound
from service.models import CabinetSession, Reseller, User
from service.pagination import Page
from service.ratelimit import Limiter, client_name

PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 1024
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{2,63}$")
TOUCH_EVERY = timedelta(minutes=1)
"""A session's `last_seen_at` is written at most this often: not a write on every page."""

# Checked against when the username is unknown or has no password yet, so that a miss costs what a hit costs.
_DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class UserRecord:
    id: UUID
    username: str
    role: Role
    reseller_id: UUID | None
    created_at: datetime
    disabled_at: datetime | None
    password_set: bool
    setup_expires_at: datetime | None
    totp_enabled: bool

    @property
    def principal(self) -> Principal:
        """Who the user is to the service functions the API calls: an admin, or its reseller."""
        if self.reseller_id is None:
            return Principal(role="admin", subject=f"user:{self.username}")
        return Principal(role="reseller", subject=str(self.reseller_id))


@dataclass(frozen=True)
class Invitation:
    user: UserRecord
    setup_token: str
    """The setup link's secret part: in this answer only."""


@dataclass(frozen=True)
class SignedIn:
    user: UserRecord
    csrf_token: str
    token: str
    """The cookie's value (a new session's; the one presented otherwise)."""

    def actor(self, address: str) -> Actor:
        return Actor(name=self.user.username, address=address, user_id=self.user.id, reseller_id=self.user.reseller_id)


class _UserRow(NamedTuple):
    id: UUID
    username: str
    role: Role
    reseller_id: UUID | None
    created_at: datetime
    disabled_at: datetime | None
    setup_expires_at: datetime | None
    totp_secret: bytes | None
    totp_last_step: int | None
    password_hash: str | None


class _LoginRow(NamedTuple):
    id: UUID
    username: str
    role: Role
    reseller_id: UUID | None
    created_at: datetime
    disabled_at: datetime | None
    setup_expires_at: datetime | None
    totp_secret: bytes | None
    totp_last_step: int | None
    password_hash: str | None
    reseller_disabled_at: datetime | None


class _SessionRow(NamedTuple):
    id: UUID
    username: str
    role: Role
    reseller_id: UUID | None
    created_at: datetime
    disabled_at: datetime | None
    setup_expires_at: datetime | None
    totp_secret: bytes | None
    totp_last_step: int | None
    password_hash: str | None
    csrf_token: str
    last_seen_at: datetime
    expires_at: datetime
    reseller_disabled_at: datetime | None


class _Id(NamedTuple):
    id: UUID


_USER_COLUMNS = (
    User.id,
    User.username,
    User.role,
    User.reseller_id,
    User.created_at,
    User.disabled_at,
    User.setup_expires_at,
    User.totp_secret,
    User.totp_last_step,
)


def _user(row: _UserRow | _LoginRow | _SessionRow) -> UserRecord:
    return UserRecord(
        id=row.id,
        username=row.username,
        role=row.role,
        reseller_id=row.reseller_id,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
        password_set=row.password_hash is not None,
        setup_expires_at=row.setup_expires_at,
        totp_enabled=row.totp_secret is not None,
    )


_SELECT_USER = select(*_USER_COLUMNS, User.password_hash)
_BY_ID = Rows(_SELECT_USER.where(User.id == bindparam("user_id")), _UserRow)
_BY_USERNAME = Rows(
    _SELECT_USER.add_columns(Reseller.disabled_at.label("reseller_disabled_at"))
    .outerjoin(Reseller, Reseller.id == User.reseller_id)
    .where(User.username == bindparam("username")),
    _LoginRow,
)
_BY_SETUP = Rows(
    _SELECT_USER.where(User.setup_digest == bindparam("digest"), User.setup_expires_at > bindparam("now")), _UserRow
)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def fold_username(username: str) -> str:
    """The username as stored: trimmed, lower case; `InvalidRequest` for one outside `USERNAME`."""
    folded = username.strip().lower()
    if not USERNAME.match(folded):
        raise InvalidRequest(
            N_("A username is 3 to 64 letters a-z, digits and . _ @ -, starting with a letter or a digit")
        )
    return folded


def check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise InvalidRequest(N_("A password has at least %(count)d characters"), count=PASSWORD_MIN_LENGTH)
    if len(password) > PASSWORD_MAX_LENGTH:
        raise InvalidRequest(N_("A password has at most %(count)d characters"), count=PASSWORD_MAX_LENGTH)


# --- Users


async def invite(
    *,
    driver: Driver,
    actor: Actor,
    username: str,
    role: Role,
    reseller_id: UUID | None,
    now: datetime,
    setup_lifetime: timedelta,
) -> Invitation:
    """A new user, with no password until it follows the setup link (good for `setup_lifetime`, shown once)."""
    username = fold_username(username)
    if (role == "reseller") != (reseller_id is not None):
        raise InvalidRequest(N_("A reseller's user names its reseller; an admin names none"))
    token = secrets.token_urlsafe(32)
    values = {
        "id": uuid.uuid4(),
        "username": username,
        "role": role,
        "reseller_id": reseller_id,
        "setup_digest": digest(token),
        "setup_expires_at": now + setup_lifetime,
    }
    try:
        user = await _insert(driver=driver, actor=actor, values=values, now=now)
    except Duplicate as exc:
        raise UserExists() from exc
    return Invitation(user, token)


_INSERT = (
    insert(User)
    .values({column: bindparam(column) for column in ("id", "username", "role", "reseller_id", "setup_digest")})
    .values(setup_expires_at=bindparam("setup_expires_at"))
)


@retried
async def _insert(*, driver: Driver, actor: Actor, values: dict[str, object], now: datetime) -> UserRecord:
    async with driver.transaction() as session:
        await resellers.require(session, values["reseller_id"])  # type: ignore[arg-type]
        await session.execute(_INSERT, values)
        user = await _find(session, values["id"])  # type: ignore[arg-type]
        await audit.record(
            session,
            actor=actor,
            action="user.invited",
            now=now,
            target=user.username,
            reseller_id=user.reseller_id,
            details={"role": user.role},
        )
    return user


async def _find(session: Session, user_id: UUID) -> UserRecord:
    row = await session.first(_BY_ID, {"user_id": user_id})
    if row is None:
        raise UserNotFound()
    return _user(row)


async def get(*, driver: Driver, user_id: UUID) -> UserRecord:
    async with driver.reading() as session:
        return await _find(session, user_id)


async def list_users(*, driver: Driver, reseller_id: UUID | None = None) -> list[UserRecord]:
    """Every user (admins first, then by username), or one reseller's."""
    statement = _SELECT_USER.order_by(User.role, User.username)
    if reseller_id is not None:
        statement = statement.where(User.reseller_id == reseller_id)
    async with driver.reading() as session:
        return [_user(row) for row in await session.all(Rows(statement, _UserRow), {})]


async def page_of_users(
    *, driver: Driver, reseller_id: UUID | None = None, cursor: str | None = None, limit: int = 100
) -> Page[UserRecord]:
    """A page of `list_users`, in the same order (on `uq_users_username` within each role)."""
    statement = _SELECT_USER.order_by(User.role, User.username).limit(limit + 1)
    if reseller_id is not None:
        statement = statement.where(User.reseller_id == reseller_id)
    if cursor is not None:
        after = pagination.decode(cursor, str, str)
        statement = statement.where(tuple_(User.role, User.username) > tuple_(*after))
    async with driver.reading() as session:
        rows = await session.all(Rows(statement, _UserRow), {})
    return pagination.page_of(rows, limit, lambda row: (row.role, row.username)).map(_user)


_DISABLE = (
    update(User).where(User.id == bindparam("user_id"), User.disabled_at.is_(None)).values(disabled_at=bindparam("now"))
)
_ENABLE = update(User).where(User.id == bindparam("user_id")).values(disabled_at=None)
_END_SESSIONS = delete(CabinetSession).where(CabinetSession.user_id == bindparam("user_id"))


@retried
async def disable(*, driver: Driver, actor: Actor, user_id: UUID, now: datetime) -> UserRecord:
    """The user signs in no more, and its open sessions end now. Disabling it again keeps the first instant."""
    async with driver.transaction() as session:
        await session.execute(_DISABLE, {"user_id": user_id, "now": now})
        await session.execute(_END_SESSIONS, {"user_id": user_id})
        user = await _find(session, user_id)
        await audit.record(
            session, actor=actor, action="user.disabled", now=now, target=user.username, reseller_id=user.reseller_id
        )
    return user


@retried
async def enable(*, driver: Driver, actor: Actor, user_id: UUID, now: datetime) -> UserRecord:
    async with driver.transaction() as session:
        await session.execute(_ENABLE, {"user_id": user_id})
        user = await _find(session, user_id)
        await audit.record(
            session, actor=actor, action="user.enabled", now=now, target=user.username, reseller_id=user.reseller_id
        )
    return user


_END_RESELLER_SESSIONS = delete(CabinetSession).where(
    CabinetSession.user_id.in_(select(User.id).where(User.reseller_id == bindparam("reseller_id")))
)


@retried
async def end_reseller_sessions(*, driver: Driver, reseller_id: UUID) -> int:
    """Delete the open sessions of a reseller's users (it was disabled: they are refused anyway)."""
    async with driver.transaction() as session:
        return await session.execute(_END_RESELLER_SESSIONS, {"reseller_id": reseller_id})


_RENEW_SETUP = (
    update(User)
    .where(User.id == bindparam("user_id"))
    .values(setup_digest=bindparam("setup_digest"), setup_expires_at=bindparam("setup_expires_at"))
)


@retried
async def renew_setup_link(
    *, driver: Driver, actor: Actor, user_id: UUID, now: datetime, setup_lifetime: timedelta
) -> Invitation:
    """A new setup link (an invitation that expired, a password forgotten): the one before stops working; the
    password, if any, works until the new link sets another."""
    token = secrets.token_urlsafe(32)
    async with driver.transaction() as session:
        await _find(session, user_id)
        await session.execute(
            _RENEW_SETUP,
            {"user_id": user_id, "setup_digest": digest(token), "setup_expires_at": now + setup_lifetime},
        )
        user = await _find(session, user_id)
        await audit.record(
            session,
            actor=actor,
            action="user.setup_link_renewed",
            now=now,
            target=user.username,
            reseller_id=user.reseller_id,
        )
    return Invitation(user, token)


# --- Setting a password


async def invited(*, driver: Driver, token: str, now: datetime) -> UserRecord:
    """The user a setup link is for, while it is good; `SetupLinkInvalid` otherwise."""
    row = await driver.first(_BY_SETUP, {"digest": digest(token), "now": now})
    if row is None:
        raise SetupLinkInvalid()
    return _user(row)


_SET_PASSWORD = Rows(
    update(User)
    .where(User.setup_digest == bindparam("digest"), User.setup_expires_at > bindparam("now"))
    .values(password_hash=bindparam("password_hash"), setup_digest=None, setup_expires_at=None)
    .returning(User.id),
    _Id,
)


async def set_password(*, driver: Driver, token: str, password: str, address: str, now: datetime) -> UserRecord:
    """The password of the user the setup link is for; the link is used up."""
    user = await invited(driver=driver, token=token, now=now)
    check_password(password)
    password_hash = await asyncio.to_thread(hash_secret, password)
    return await _store_password(
        driver=driver,
        token=token,
        password_hash=password_hash,
        actor=Actor(user.username, address, user.id, user.reseller_id),
        now=now,
    )


@retried
async def _store_password(*, driver: Driver, token: str, password_hash: str, actor: Actor, now: datetime) -> UserRecord:
    async with driver.transaction() as session:
        row = await session.first(_SET_PASSWORD, {"digest": digest(token), "now": now, "password_hash": password_hash})
        if row is None:  # used by a request that got here first, or expired meanwhile
            raise SetupLinkInvalid()
        user = await _find(session, row.id)
        await audit.record(session, actor=actor, action="user.password_set", now=now, target=user.username)
    return user


# --- Sessions


@dataclass(frozen=True)
class SessionTimes:
    idle: timedelta
    lifetime: timedelta


_OPEN = insert(CabinetSession).values(
    {
        column: bindparam(column)
        for column in ("digest", "user_id", "csrf_token", "address", "created_at", "last_seen_at", "expires_at")
    }
)
SIGN_IN_REFUSED = N_("Wrong username, password or one-time code")
CODE_REFUSED = N_("The code does not match: check that the phone's clock is right, and type the newest code")


async def sign_in(
    *,
    driver: Driver,
    limiter: Limiter,
    checks: SecretChecks,
    address: str,
    username: str,
    password: str,
    code: str,
    box: totp.SecretBox,
    now: datetime,
    times: SessionTimes,
) -> SignedIn:
    """A new session when the password is right, and the one-time code too for a user who set up two-step
    sign-in, and the user (and its reseller) enabled; `Unauthenticated` otherwise, the same in every case.
    Failures are limited per (address, username) before any hashing; a code is good once."""
    username = username.strip().lower()[:64]
    async with limiter.attempt(
        limits={f"{client_name(address)}:user:{username}": limiter.limit}, failures=(Unauthenticated,)
    ):
        row = await driver.first(_BY_USERNAME, {"username": username})
        stored = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
        good = await checks.verify(password, stored)
        if (
            not good
            or row is None
            or row.password_hash is None
            or row.disabled_at is not None
            or row.reseller_disabled_at is not None
            or not await _code_taken(driver, row, box, code, now)
        ):
            if row is not None:
                await audit.record_alone(
                    driver=driver,
                    actor=Actor(row.username, address, row.id, row.reseller_id),
                    action="session.refused",
                    now=now,
                )
            raise Unauthenticated(SIGN_IN_REFUSED)
    user = _user(row)
    token, csrf_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await _open(driver=driver, user=user, token=token, csrf_token=csrf_token, address=address, now=now, times=times)
    return SignedIn(user, csrf_token, token)


_TAKE_STEP = (
    update(User)
    .where(
        User.id == bindparam("user_id"),
        (User.totp_last_step.is_(None)) | (User.totp_last_step < bindparam("step")),
    )
    .values(totp_last_step=bindparam("step"))
)


async def _code_taken(driver: Driver, row: _LoginRow, box: totp.SecretBox, code: str, now: datetime) -> bool:
    """No code needed (no TOTP set up), or this one matches a step later than the last taken, which it takes."""
    if row.totp_secret is None:
        return True
    step = totp.matching_step(box.open(row.totp_secret, row.id), code, now)
    if step is None:
        return False
    async with driver.transaction() as session:
        return await session.execute(_TAKE_STEP, {"user_id": row.id, "step": step}) == 1


_ENROLL = (
    update(User)
    .where(User.id == bindparam("user_id"), User.totp_secret.is_(None))
    .values(totp_secret=bindparam("sealed"), totp_last_step=bindparam("step"))
)


@retried
async def enroll_totp(
    *, driver: Driver, box: totp.SecretBox, actor: Actor, user_id: UUID, secret: bytes, code: str, now: datetime
) -> UserRecord:
    """Two-step sign-in from now on, once the user has shown a code of `secret` (its app has it right)."""
    step = totp.matching_step(secret, code, now)
    if step is None:
        raise InvalidRequest(CODE_REFUSED)
    async with driver.transaction() as session:
        await session.execute(_ENROLL, {"user_id": user_id, "sealed": box.seal(secret, user_id), "step": step})
        user = await _find(session, user_id)
        await audit.record(session, actor=actor, action="user.totp_enabled", now=now, target=user.username)
    return user


_RESET_TOTP = update(User).where(User.id == bindparam("user_id")).values(totp_secret=None, totp_last_step=None)


@retried
async def reset_totp(*, driver: Driver, actor: Actor, user_id: UUID, now: datetime) -> UserRecord:
    """Two-step sign-in off, for a user who lost its authenticator: its open sessions end now, and it signs in with
    its password alone until it sets it up again (an admin, with `CABINET_ADMIN_TOTP`, before anything else)."""
    async with driver.transaction() as session:
        await session.execute(_RESET_TOTP, {"user_id": user_id})
        await session.execute(_END_SESSIONS, {"user_id": user_id})
        user = await _find(session, user_id)
        await audit.record(
            session, actor=actor, action="user.totp_reset", now=now, target=user.username, reseller_id=user.reseller_id
        )
    return user


_PURGE_ENDED = delete(CabinetSession).where(
    CabinetSession.user_id == bindparam("user_id"),
    (CabinetSession.expires_at <= bindparam("now")) | (CabinetSession.last_seen_at <= bindparam("idle_since")),
)


@retried
async def _open(
    *, driver: Driver, user: UserRecord, token: str, csrf_token: str, address: str, now: datetime, times: SessionTimes
) -> None:
    async with driver.transaction() as session:
        # The user's sessions that ended unseen (idle or past their lifetime) go as it opens a new one: the table
        # holds no more than each user's recent sign-ins.
        await session.execute(_PURGE_ENDED, {"user_id": user.id, "now": now, "idle_since": now - times.idle})
        await session.execute(
            _OPEN,
            {
                "digest": digest(token),
                "user_id": user.id,
                "csrf_token": csrf_token,
                "address": address[:64],
                "created_at": now,
                "last_seen_at": now,
                "expires_at": now + times.lifetime,
            },
        )
        await audit.record(
            session, actor=Actor(user.username, address, user.id, user.reseller_id), action="session.signed_in", now=now
        )


_CURRENT = Rows(
    select(
        *_USER_COLUMNS,
        User.password_hash,
        CabinetSession.csrf_token,
        CabinetSession.last_seen_at,
        CabinetSession.expires_at,
        Reseller.disabled_at.label("reseller_disabled_at"),
    )
    .join(User, User.id == CabinetSession.user_id)
    .outerjoin(Reseller, Reseller.id == User.reseller_id)
    .where(CabinetSession.digest == bindparam("digest")),
    _SessionRow,
)
_TOUCH = (
    update(CabinetSession).where(CabinetSession.digest == bindparam("digest")).values(last_seen_at=bindparam("now"))
)
_CLOSE = delete(CabinetSession).where(CabinetSession.digest == bindparam("digest"))


async def current(*, driver: Driver, token: str, now: datetime, times: SessionTimes) -> SignedIn | None:
    """The session of the cookie `token`, if it is still good (see the module's docstring); None otherwise."""
    key = digest(token)
    row = await driver.first(_CURRENT, {"digest": key})
    if row is None:
        return None
    if row.disabled_at is not None or row.reseller_disabled_at is not None:
        return None
    if now >= row.expires_at or now >= row.last_seen_at + times.idle:
        async with driver.transaction() as session:
            await session.execute(_CLOSE, {"digest": key})
        return None
    if now >= row.last_seen_at + TOUCH_EVERY:
        async with driver.transaction() as session:
            await session.execute(_TOUCH, {"digest": key, "now": now})
    return SignedIn(_user(row), row.csrf_token, token)


@retried
async def sign_out(*, driver: Driver, signed_in: SignedIn, address: str, now: datetime) -> None:
    async with driver.transaction() as session:
        await session.execute(_CLOSE, {"digest": digest(signed_in.token)})
        await audit.record(session, actor=signed_in.actor(address), action="session.signed_out", now=now)


def setup_path(token: str) -> str:
    return f"/cabinet/setup/{token}"
