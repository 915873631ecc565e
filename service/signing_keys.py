"""The deployment's signing keys: one key set, kept in the database and shared by every process.

Keys follow one another (`generation`). The key that signs at an instant is the newest whose `signs_from` has
come, and only if the root of trust certified it (`certificate`) for long enough that a certificate it signs
expires before the key's own certificate does: a key with no root certificate never signs.

A rotation publishes the new key first and schedules it to sign only once every process and every cache of the
JWKS holds it: processes read the key set again every `SIGNING_KEYS_RELOAD_SECONDS`, and a JWKS may be kept for
`JWKS_MAX_AGE_SECONDS`, so the new key signs from the instant its publication committed plus both. An emergency
rotation (`immediately`) signs at once, at the cost described in docs/certificates.md. A rotation is made where the
root's private key is (`rotate`, the command line), or prepared here without it (`prepare`: a new key and its
certificate signing request, kept apart in `pending_signing_keys`, neither published nor signing), certified offline
by the root's holder (`trust.Root.certify_request`) and published with that certificate (`publish_prepared`): both
publish through `_publish`, by the same rules. A retired key stays published while a certificate it signed may still
be valid: for the certificates' lifetime, plus the time a process that has not yet reloaded may still sign with it. A
revoked key is published no more and never signs again; the root-signed revocation list names it (`revoke`).

The private keys are stored encrypted (Fernet) under a key derived from `CERTIFICATE_KEY_SECRET`. A deployment
may give its key as `CERTIFICATE_PRIVATE_KEY` (and its root certificate as `CERTIFICATE_CHAIN`) instead: that
key alone signs, and is not stored.

Each process keeps the key set in memory (`SigningKeys`) and reads it again every `SIGNING_KEYS_RELOAD_SECONDS`,
so that a certificate costs no read.
"""

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import bindparam, delete, func, insert, select, update

from service import errors, trust, verification
from service.audit import Pending
from service.certificates import CertificateSigner, generate_private_key, kid_of, public_key_of
from service.clock import Clock
from service.driver import Contended, Driver, Duplicate, Rows, Session, retried
from service.errors import N_, NoSigningKey, RotationUnderWay
from service.models import PendingSigningKey, RevocationList, SigningKey
from service.settings import Settings
from service.trust import Revoked, Root

log = logging.getLogger(__name__)

STOPPED = timedelta(minutes=1)
"""A rotation's key still not scheduled this long after it was published: the rotation stopped in between (its two
transactions are milliseconds apart)."""
IN_FLIGHT = timedelta(minutes=1)
"""How long before it is made a key made to sign at once (the first, or a development root's next) signs from."""


class SigningKeyNotFound(Exception):
    """No unrevoked signing key has this kid."""


@dataclass(frozen=True)
class PublishedKey:
    signer: CertificateSigner
    generation: int
    signs_from: datetime | None
    """None: published, not (yet) scheduled to sign."""
    signs_until: datetime | None
    """The last instant its certificates expire within its own certificate; None when the root did not certify it."""


@dataclass(frozen=True)
class KeySet:
    keys: Sequence[PublishedKey]
    """Newest first."""
    jwks: dict
    """The JSON Web Key Set: every published key, those about to sign and those whose certificates may still be
    valid, each with its `x5c`."""

    def signer(self, now: datetime) -> CertificateSigner:
        """The key that signs at `now`: the newest whose signing has begun, if the root certified it for now."""
        for key in self.keys:
            if key.signs_from is not None and key.signs_from <= now:
                if key.signs_until is None or now > key.signs_until:
                    raise NoSigningKey()
                return key.signer
        raise NoSigningKey()


def _cipher(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"timex-licensing signing keys").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


class _Key(NamedTuple):
    id: int
    kid: str
    private_key: bytes
    generation: int
    signs_from: datetime | None
    certificate: bytes | None
    created_at: datetime
    revoked_at: datetime | None


class _Generation(NamedTuple):
    generation: int


class _RevokedKey(NamedTuple):
    certificate: bytes
    revoked_at: datetime
    revoked_since: datetime


class _Number(NamedTuple):
    number: int


class _List(NamedTuple):
    crl: bytes


_KEYS = Rows(
    select(
        SigningKey.id,
        SigningKey.kid,
        SigningKey.private_key,
        SigningKey.generation,
        SigningKey.signs_from,
        SigningKey.certificate,
        SigningKey.created_at,
        SigningKey.revoked_at,
    ).order_by(SigningKey.generation.desc()),
    _Key,
)
_NEW_KEY = insert(SigningKey).values(
    kid=bindparam("kid"),
    private_key=bindparam("private_key"),
    generation=bindparam("generation"),
    signs_from=bindparam("signs_from"),
    certificate=bindparam("certificate"),
    created_at=bindparam("now"),
)
_SCHEDULE = (
    update(SigningKey)
    .where(SigningKey.kid == bindparam("key_kid"), SigningKey.signs_from.is_(None))
    .values(signs_from=bindparam("signs_from"))
)
_CERTIFY = (
    update(SigningKey)
    .where(SigningKey.id == bindparam("key_id"), SigningKey.certificate.is_not_distinct_from(bindparam("old")))
    .values(certificate=bindparam("certificate"))
)
_REVOKE = Rows(
    update(SigningKey)
    .where(SigningKey.kid == bindparam("key_kid"), SigningKey.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), revoked_since=func.coalesce(bindparam("since"), SigningKey.created_at))
    .returning(SigningKey.generation),
    _Generation,
)
_REVOKED = Rows(
    select(SigningKey.certificate, SigningKey.revoked_at, SigningKey.revoked_since).where(
        SigningKey.revoked_at.is_not(None), SigningKey.certificate.is_not(None)
    ),
    _RevokedKey,
)
_NEXT_LIST = Rows(select(func.coalesce(func.max(RevocationList.number), 0).label("number")), _Number)
_NEW_LIST = insert(RevocationList).values(number=bindparam("number"), crl=bindparam("crl"), created_at=bindparam("now"))
_NEWEST_LIST = Rows(select(RevocationList.crl).order_by(RevocationList.number.desc()).limit(1), _List)


@dataclass(frozen=True)
class Timing:
    lifetime: timedelta
    """CERTIFICATE_LIFETIME_DAYS"""
    reload: timedelta
    """SIGNING_KEYS_RELOAD_SECONDS"""
    max_age: timedelta
    """JWKS_MAX_AGE_SECONDS"""
    period: timedelta
    """SIGNING_KEY_PERIOD_DAYS: how long a key may sign, which its certificate covers with `lifetime` more."""
    zone: tzinfo
    """BUSINESS_TIMEZONE: where the business day a certificate states its support as of, and so its `iat`, begins."""

    @classmethod
    def of(cls, settings: Settings) -> "Timing":
        return cls(
            lifetime=timedelta(days=settings.certificate_lifetime_days),
            reload=timedelta(seconds=settings.signing_keys_reload_seconds),
            max_age=timedelta(seconds=settings.jwks_max_age_seconds),
            period=timedelta(days=settings.signing_key_period_days),
            zone=settings.zone,
        )

    @property
    def publication(self) -> timedelta:
        """From a key's publication to its first signature: every process has read it, every cached JWKS holds it."""
        return self.reload + self.max_age

    def validity(self, now: datetime, signs_from: datetime | None) -> tuple[datetime, datetime]:
        """A new key's certificate's, from `now`: from then (or from its first signature, if earlier) until a signing
        period after its first signature and the lifetime of its last certificates. A key not yet scheduled
        (`signs_from` None) first signs `publication` after now."""
        first_signature = now + self.publication if signs_from is None else signs_from
        return min(now, first_signature), first_signature + self.period + self.lifetime

    @property
    def retained(self) -> timedelta:
        """How long a retired key stays published: its last certificates' lifetime, after a process that had not yet
        read the key set again (after an emergency rotation) last signed with it."""
        return self.lifetime + self.reload


class SigningKeys:
    """The process's copy of the key set: read on first use, then again once `reload` has passed. The root of trust
    is read (a development root made) on first use too: building the app (for its API document, say) makes
    nothing."""

    def __init__(
        self,
        *,
        driver: Driver,
        clock: Clock,
        issuer: str,
        timing: Timing,
        secret: str,
        root: Callable[[], Root],
        private_key_pem: str | None = None,
        chain_pem: str | None = None,
    ):
        self._driver = driver
        self._clock = clock
        self._issuer = issuer
        self._timing = timing
        self._secret = secret
        self._make_root = root
        self._root: Root | None = None
        self._given = None if private_key_pem is None else (private_key_pem, chain_pem)
        self._lock = asyncio.Lock()
        self._fresh_until = 0.0
        self._current: KeySet | None = None

    @property
    def max_age(self) -> int:
        """How long a copy of the JWKS may be kept (a rotation's new key signs only after as long)."""
        return int(self._timing.max_age.total_seconds())

    @property
    def given(self) -> bool:
        """Whether the key is CERTIFICATE_PRIVATE_KEY's, not the database's."""
        return self._given is not None

    def root(self) -> Root:
        """The root of trust, read (or a development root made) on first use."""
        if self._root is None:
            self._root = self._make_root()
        return self._root

    async def current(self) -> KeySet:
        if time.monotonic() < self._fresh_until and self._current is not None:
            return self._current
        async with self._lock:  # one read per process, however many requests find the copy stale at once
            if time.monotonic() >= self._fresh_until or self._current is None:
                root = self.root()
                if self._given is not None:
                    private_key_pem, chain_pem = self._given
                    self._current = _given_key(
                        private_key_pem,
                        chain_pem,
                        issuer=self._issuer,
                        timing=self._timing,
                        root=root,
                        now=self._clock.now(),
                    )
                    self._fresh_until = float("inf")
                    return self._current
                # Stamped before the read: the copy then never holds a key set older than `reload` (a rotation
                # counts on it).
                started = time.monotonic()
                previous = self._current
                self._current = await load(
                    driver=self._driver,
                    secret=self._secret,
                    issuer=self._issuer,
                    timing=self._timing,
                    root=root,
                    now=self._clock.now(),
                )
                self._fresh_until = started + self._timing.reload.total_seconds()
                if previous is None or _kids(previous) != _kids(self._current):
                    log.info("signing keys published: %s", _described(self._current))
        return self._current


def _kids(key_set: KeySet) -> list[str]:
    return [key.signer.kid for key in key_set.keys]


def _described(key_set: KeySet) -> str:
    """Each published key, newest first, with when it signs (from), or that it does not yet, or that the root did
    not certify it."""
    return "; ".join(
        f"{key.signer.kid} "
        + ("not scheduled" if key.signs_from is None else f"from {key.signs_from.isoformat()}")
        + ("" if key.signs_until is not None else " (not certified by the root: never signs)")
        for key in key_set.keys
    )


def _given_key(
    private_key_pem: str, chain_pem: str | None, *, issuer: str, timing: Timing, root: Root, now: datetime
) -> KeySet:
    """CERTIFICATE_PRIVATE_KEY's key set: certified by CERTIFICATE_CHAIN, or by a development root at start-up."""
    certificate = None if chain_pem is None else x509.load_pem_x509_certificate(chain_pem.encode())
    if certificate is None and root.key is not None:
        public = public_key_of(private_key_pem)
        der = root.certify(public, kid_of(private_key_pem), now, now + timing.period + timing.lifetime)
        certificate = x509.load_der_x509_certificate(der)
    key = _published(
        private_key_pem,
        certificate,
        generation=1,
        signs_from=datetime.min.replace(tzinfo=now.tzinfo),
        issuer=issuer,
        timing=timing,
        root=root,
    )
    if key.signs_until is None:
        log.error("CERTIFICATE_CHAIN does not certify CERTIFICATE_PRIVATE_KEY by the root: no certificate is signed")
    return KeySet([key], {"keys": [key.signer.public_jwk]})


def certified(certificate: x509.Certificate | None, private_key_pem: str, root: Root) -> bool:
    """Whether `certificate` is the root's certificate of this key, for signing."""
    if certificate is None or certificate.public_key() != public_key_of(private_key_pem):
        return False
    try:
        certificate.verify_directly_issued_by(root.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _published(
    private_key_pem: str,
    certificate: x509.Certificate | None,
    *,
    generation: int,
    signs_from: datetime | None,
    issuer: str,
    timing: Timing,
    root: Root,
) -> PublishedKey:
    if certified(certificate, private_key_pem, root):
        assert certificate is not None
        chain = [certificate.public_bytes(serialization.Encoding.DER)]  # the root is the verifier's own
        signs_until = certificate.not_valid_after_utc - timing.lifetime
    else:
        chain, signs_until = [], None
    signer = CertificateSigner(private_key_pem, issuer, timing.lifetime, chain, zone=timing.zone)
    return PublishedKey(signer, generation, signs_from, signs_until)


async def load(*, driver: Driver, secret: str, issuer: str, timing: Timing, root: Root, now: datetime) -> KeySet:
    """The published keys, newest first. Where this process holds the root's key (a development root), it makes
    a first signing key on an empty table (or when no key may sign any more), and certifies a key stored
    without a certificate; processes that start at once each try: the unique `generation` lets one key in."""
    cipher = _cipher(secret)
    rows, generation = await _keys(driver)
    if root.key is not None and not _can_sign(rows, cipher, timing, root, now):
        # Signing from a little before now: a request that read the clock before it waited for this key set signs
        # with this key too.
        signs_from = now - IN_FLIGHT
        first = _new_key(cipher, root, timing, now, signs_from)
        with suppress(Duplicate):  # another process made it first
            async with driver.transaction() as session:
                await _insert(session, first, generation=generation, signs_from=signs_from, now=now)
        rows, _ = await _keys(driver)
    published = []
    retired_at: datetime | None = None  # when the newer keys' signing began
    for row in rows:
        if retired_at is None or retired_at > now - timing.retained:
            pem = _decrypted(cipher, row.private_key)
            certificate = None if row.certificate is None else x509.load_der_x509_certificate(row.certificate)
            if root.key is not None and not certified(certificate, pem, root):
                certificate = await _certify(driver, row, pem, root, timing, now)
            key = _published(
                pem,
                certificate,
                generation=row.generation,
                signs_from=row.signs_from,
                issuer=issuer,
                timing=timing,
                root=root,
            )
            published.append(key)
        if row.signs_from is not None:
            retired_at = row.signs_from if retired_at is None else min(retired_at, row.signs_from)
    key_set = KeySet(published, {"keys": [key.signer.public_jwk for key in published]})
    _say_when_to_rotate(key_set, timing, now)
    return key_set


def _say_when_to_rotate(key_set: KeySet, timing: Timing, now: datetime) -> None:
    """In the log, at each read of the key set: that no key can sign, or that the signing key's certificate leaves
    it less than a certificate's lifetime more to sign, with no newer key published."""
    try:
        signer = key_set.signer(now)
    except NoSigningKey:
        log.error("no signing key certified by the root can sign now: run `timex-licensing rotate-signing-key`")
        return
    [current] = [key for key in key_set.keys if key.signer is signer]
    newest = key_set.keys[0]
    if current is newest and current.signs_until is not None and current.signs_until - now < timing.lifetime:
        log.warning("the signing key %s signs until %s only: rotate it", signer.kid, current.signs_until.isoformat())


def _decrypted(cipher: Fernet, private_key: bytes) -> str:
    try:
        return cipher.decrypt(private_key).decode()
    except InvalidToken:
        raise RuntimeError("CERTIFICATE_KEY_SECRET does not decrypt the stored signing keys") from None


def _can_sign(rows: list[_Key], cipher: Fernet, timing: Timing, root: Root, now: datetime) -> bool:
    """Whether the key signing at `now` is certified for now (by this root)."""
    for row in rows:
        if row.signs_from is not None and row.signs_from <= now:
            if row.certificate is None:
                return True  # certified below, when read
            certificate = x509.load_der_x509_certificate(row.certificate)
            pem = _decrypted(cipher, row.private_key)
            return not certified(certificate, pem, root) or now <= certificate.not_valid_after_utc - timing.lifetime
    return False


async def _certify(driver: Driver, row: _Key, pem: str, root: Root, timing: Timing, now: datetime) -> x509.Certificate:
    """A key stored without a certificate of this root (made before roots existed, or under another development
    root), certified by the development root for a signing period from now."""
    der = root.certify(public_key_of(pem), row.kid, row.created_at, now + timing.period + timing.lifetime)
    async with driver.transaction() as session:
        await session.execute(_CERTIFY, {"key_id": row.id, "old": row.certificate, "certificate": der})
    return x509.load_der_x509_certificate(der)


async def _keys(driver: Driver) -> tuple[list[_Key], int]:
    """The keys not revoked, newest first; and the next key's generation: a key added as the next after what was
    read is refused (`Duplicate`) if another was added since."""
    async with driver.reading() as session:
        rows = await session.all(_KEYS, {})
    return [row for row in rows if row.revoked_at is None], (rows[0].generation + 1 if rows else 1)


@dataclass(frozen=True)
class _NewKey:
    kid: str
    private_key: bytes
    """Encrypted."""
    certificate: bytes
    """DER, by the root."""


def _new_key(cipher: Fernet, root: Root, timing: Timing, now: datetime, signs_from: datetime | None) -> _NewKey:
    """A new key, certified by `root` for its `timing.validity`."""
    pem = generate_private_key()
    kid = kid_of(pem)
    certificate = root.certify(public_key_of(pem), kid, *timing.validity(now, signs_from))
    return _NewKey(kid, cipher.encrypt(pem.encode()), certificate)


async def _insert(
    session: Session, key: _NewKey, *, generation: int, signs_from: datetime | None, now: datetime
) -> None:
    """`Duplicate` when another key took that generation first."""
    await session.execute(
        _NEW_KEY,
        {
            "kid": key.kid,
            "private_key": key.private_key,
            "generation": generation,
            "signs_from": signs_from,
            "certificate": key.certificate,
            "now": now,
        },
    )


class _SigningSince(NamedTuple):
    signs_from: datetime | None


# The key that signs at an instant: the newest whose `signs_from` has come (see the module's docstring).
_SIGNING_SINCE = Rows(
    select(SigningKey.signs_from)
    .where(SigningKey.signs_from <= bindparam("now"))
    .order_by(SigningKey.generation.desc())
    .limit(1),
    _SigningSince,
)


async def signing_since(*, driver: Driver, now: datetime) -> datetime | None:
    """Since when the key that signs now has signed (None before the first one, or with `CERTIFICATE_PRIVATE_KEY`)."""
    row = await driver.first(_SIGNING_SINCE, {"now": now})
    return None if row is None else row.signs_from


@dataclass(frozen=True)
class Rotation:
    signing: str
    """The new key's kid."""
    signs_from: datetime


@retried
async def rotate(
    *, driver: Driver, secret: str, root: Root, timing: Timing, clock: Clock, immediately: bool
) -> Rotation:
    """Publish a new key, certified by `root` (which holds its private key: the command line's rotation), as
    `_publish` does. `immediately`: it signs at once."""
    now = clock.now()
    key = _new_key(_cipher(secret), root, timing, now, now if immediately else None)
    return await _publish(driver=driver, key=key, timing=timing, clock=clock, now=now, immediately=immediately)


async def _publish(
    *,
    driver: Driver,
    key: _NewKey,
    timing: Timing,
    clock: Clock,
    now: datetime,
    immediately: bool,
    prepared: bool = False,
    audit: Pending[str] | None = None,
) -> Rotation:
    """The one way a key is published (`rotate`, `publish_prepared`): schedule it to sign once every process and JWKS
    cache holds it, `timing.publication` after its publication committed (read from the clock after the commit, so
    the time a commit takes is not counted in). Refused while a rotation is under way; a rotation that stopped
    between the two (its key published, still not scheduled after `STOPPED`) is finished instead, and its rotation
    answered. `immediately`: the key signs at once. `prepared`: the key leaves the pending keys in the transaction
    that publishes it. `audit`: written in that transaction too, about the key's kid."""
    rows, generation = await _keys(driver)
    newest = rows[0] if rows else None
    if newest is not None and not immediately:
        if newest.signs_from is None and newest.created_at < now - STOPPED:
            return await _schedule(driver, newest.kid, clock.now() + timing.publication)
        if newest.signs_from is None:
            raise RotationUnderWay(
                N_("The key %(kid)s is published, not yet scheduled: it is the rotation under way"), kid=newest.kid
            )
        if newest.signs_from > now:
            raise RotationUnderWay(
                N_("The key %(kid)s signs from %(instant)s: it is the rotation under way"),
                kid=newest.kid,
                instant=newest.signs_from.isoformat(),
            )
    signs_from = now if immediately else None
    try:
        async with driver.transaction() as session:
            if prepared and await session.first(_TAKE_PENDING, {"key_kid": key.kid}) is None:
                raise errors.SigningKeyNotPrepared()
            await _insert(session, key, generation=generation, signs_from=signs_from, now=now)
            if audit is not None:
                await audit.write(session, key.kid)
    except Duplicate as exc:  # read again: it is the rotation under way, or the key to retire
        raise Contended("another rotation added a key first") from exc
    if immediately:
        return Rotation(key.kid, now)
    return await _schedule(driver, key.kid, clock.now() + timing.publication)


async def _schedule(driver: Driver, kid: str, signs_from: datetime) -> Rotation:
    async with driver.transaction() as session:
        await session.execute(_SCHEDULE, {"key_kid": kid, "signs_from": signs_from})
    return Rotation(kid, signs_from)


# --- A rotation prepared here and certified where the root's key is: the key waits apart, with its request


class PendingKey(NamedTuple):
    """A key prepared for a rotation, waiting for its certificate by the root."""

    kid: str
    request: bytes
    """Its certificate signing request (PKCS #10, DER), signed by the key."""
    created_at: datetime

    @property
    def request_pem(self) -> str:
        return x509.load_der_x509_csr(self.request).public_bytes(serialization.Encoding.PEM).decode()


class _PendingPrivateKey(NamedTuple):
    private_key: bytes


class _Kid(NamedTuple):
    kid: str


_PENDING = Rows(select(PendingSigningKey.kid, PendingSigningKey.request, PendingSigningKey.created_at), PendingKey)
_PENDING_PRIVATE_KEY = Rows(
    select(PendingSigningKey.private_key).where(PendingSigningKey.kid == bindparam("key_kid")), _PendingPrivateKey
)
_NEW_PENDING = insert(PendingSigningKey).values(
    id=1,
    kid=bindparam("kid"),
    private_key=bindparam("private_key"),
    request=bindparam("request"),
    created_at=bindparam("now"),
)
_TAKE_PENDING = Rows(
    delete(PendingSigningKey).where(PendingSigningKey.kid == bindparam("key_kid")).returning(PendingSigningKey.kid),
    _Kid,
)


@dataclass(frozen=True)
class Prepared:
    key: PendingKey
    made: bool
    """False: a rotation was prepared already, and this is its key."""


@retried
async def prepare(*, driver: Driver, secret: str, now: datetime, audit: Pending[PendingKey] | None = None) -> Prepared:
    """A new key for a rotation, stored encrypted as the others, with the request for its certificate that the root's
    holder certifies offline (`certify-signing-key`). It is not published and never signs until `publish_prepared`
    brings its certificate. One at a time: while a key is prepared, preparing answers that one (and writes no
    `audit` entry)."""
    found = await pending(driver=driver)
    if found is not None:
        return Prepared(found, made=False)
    pem = generate_private_key()
    key = PendingKey(kid_of(pem), trust.signing_request(pem), now)
    try:
        async with driver.transaction() as session:
            await session.execute(
                _NEW_PENDING,
                {
                    "kid": key.kid,
                    "private_key": _cipher(secret).encrypt(pem.encode()),
                    "request": key.request,
                    "now": now,
                },
            )
            if audit is not None:
                await audit.write(session, key)
    except Duplicate as exc:  # read again: another was prepared first
        raise Contended("another rotation was prepared first") from exc
    return Prepared(key, made=True)


async def pending(*, driver: Driver) -> PendingKey | None:
    """The key prepared for a rotation, if one is."""
    return await driver.first(_PENDING, {})


async def discard(*, driver: Driver, kid: str, audit: Pending[str] | None = None) -> None:
    """Forget the prepared key `kid`: its certificate, if one was made, certifies a key that no longer exists."""
    async with driver.transaction() as session:
        if await session.first(_TAKE_PENDING, {"key_kid": kid}) is None:
            raise errors.SigningKeyNotPrepared()
        if audit is not None:
            await audit.write(session, kid)


@retried
async def publish_prepared(
    *,
    driver: Driver,
    secret: str,
    root: Root,
    timing: Timing,
    clock: Clock,
    kid: str,
    certificate: str,
    immediately: bool,
    audit: Pending[str] | None = None,
) -> Rotation:
    """Publish the prepared key `kid` with its `certificate` (PEM) by the root, as `rotate` publishes a key, once
    the certificate is checked: what `load` checks of every key (`certified`: by this root, of this key), what a
    verifier checks of a key's certificate, valid when the key first signs and long enough to sign then (else
    `SigningKeyCertificateRefused`). A stopped rotation that `_publish` finishes instead leaves this key prepared
    (`RotationUnderWay`)."""
    now = clock.now()
    found = await driver.first(_PENDING_PRIVATE_KEY, {"key_kid": kid})
    if found is None:
        raise errors.SigningKeyNotPrepared()
    pem = _decrypted(_cipher(secret), found.private_key)
    first_signature = now if immediately else now + timing.publication
    der = _certificate_of(pem, certificate, root=root, timing=timing, first_signature=first_signature)
    rotation = await _publish(
        driver=driver,
        key=_NewKey(kid, found.private_key, der),
        timing=timing,
        clock=clock,
        now=now,
        immediately=immediately,
        prepared=True,
        audit=audit,
    )
    if rotation.signing != kid:
        raise RotationUnderWay(
            N_("The key %(kid)s signs from %(instant)s: it is the rotation under way"),
            kid=rotation.signing,
            instant=rotation.signs_from.isoformat(),
        )
    return rotation


_VERIFIER_REFUSALS: dict[str, type[errors.SigningKeyCertificateRefused]] = {
    "untrusted_key": errors.CertificateNotByRoot,
    "key_certificate_expired": errors.CertificateExpired,
    "key_not_for_signing": errors.CertificateNotForSigning,
}


def _certificate_of(pem: str, text: str, *, root: Root, timing: Timing, first_signature: datetime) -> bytes:
    """The certificate `text` (PEM) as DER, if the service may sign with the key `pem` under it from
    `first_signature` on."""
    try:
        certificate = x509.load_pem_x509_certificate(text.strip().encode())
    except ValueError:
        raise errors.CertificateUnreadable() from None
    try:
        verification.key_certificate_checked(certificate, root=root.certificate, on=first_signature)
    except verification.Rejected as rejected:
        raise _VERIFIER_REFUSALS[rejected.reason]() from None
    if not certified(certificate, pem, root):
        raise errors.CertificateForAnotherKey()
    if certificate.not_valid_after_utc - timing.lifetime < first_signature:
        raise errors.CertificateExpired()
    return certificate.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class Revocation:
    number: int
    """The revocation list's CRL number."""
    crl: bytes
    replacement: Rotation | None
    """The key made to sign at once, when the revoked one was signing (or about to)."""


async def revoke(
    *, driver: Driver, secret: str, root: Root, timing: Timing, clock: Clock, kid: str, since: datetime | None
) -> Revocation:
    """Revoke the key `kid`: it leaves the JWKS and signs no more, and the new revocation list (signed by `root`,
    stored, served) rejects the certificates it signed from `since` on (when None, from its certificate's start:
    every certificate it signed, none being older than its own). If it was the key signing, a new key signs at
    once: the emergency rotation."""
    now = clock.now()
    rows, _ = await _keys(driver)
    revoked = next((row for row in rows if row.kid == kid), None)
    if since is None and revoked is not None and revoked.certificate is not None:
        since = x509.load_der_x509_certificate(revoked.certificate).not_valid_before_utc
    signing = next((row.kid for row in rows if row.signs_from is not None and row.signs_from <= now), None)
    async with driver.transaction() as session:
        if await session.first(_REVOKE, {"key_kid": kid, "now": now, "since": since}) is None:
            raise SigningKeyNotFound(f"no unrevoked signing key has the kid {kid}")
    replacement = None
    if kid == signing:
        replacement = await rotate(
            driver=driver, secret=secret, root=root, timing=timing, clock=clock, immediately=True
        )
    number, crl = await publish_revocations(driver=driver, root=root, now=now)
    return Revocation(number, crl, replacement)


@retried
async def publish_revocations(*, driver: Driver, root: Root, now: datetime) -> tuple[int, bytes]:
    """A new revocation list of every revoked key, signed by `root`, stored as the one to serve."""
    async with driver.transaction() as session:
        revoked = [
            Revoked(
                x509.load_der_x509_certificate(row.certificate).serial_number,
                row.revoked_at,
                row.revoked_since,
            )
            for row in await session.all(_REVOKED, {})
        ]
        newest = await session.first(_NEXT_LIST, {})
        assert newest is not None
        number = newest.number + 1
        crl = root.revocation_list(revoked, number, now)
        try:
            await session.execute(_NEW_LIST, {"number": number, "crl": crl, "now": now})
        except Duplicate as exc:
            raise Contended("another revocation list took the number") from exc
    return number, crl


async def revocation_list(*, driver: Driver) -> bytes | None:
    """The newest revocation list (DER), None before any was made."""
    row = await driver.first(_NEWEST_LIST, {})
    return None if row is None else row.crl
