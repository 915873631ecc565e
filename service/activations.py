"""Activating keys on an installation: atomic, replay-safe, serialized per installation.

The installation's row is locked (`FOR UPDATE`) before it is extended, and each key is taken by a
conditional update that only one writer can win, so the guarantees hold across service processes.
Nothing is written unless every key is good and R6 is met.

The common case (fresh keys that bring support current) is tried first: the installation and the keys are
read without a lock and the whole activation written in one statement that stands alone, which writes
nothing unless the installation is still as read and every key is taken. Otherwise (a key not
fresh, R6 refusing, or another activation of the installation in between) the request is decided
again in a transaction that locks the installation and reads every key first (unknown, revoked,
used, a replay).
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache, partial
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from sqlalchemy import ARRAY, BindParameter, Update, bindparam, column, exists, func, insert, select, update

from service import certificates, installations, keyformat, rules, webhooks
from service.certificates import CertificateSigner
from service.driver import Driver, Refused, Rows, Session, retried
from service.errors import (
    N_,
    KeyAlreadyUsed,
    KeyDuplicated,
    KeyMalformed,
    KeyNotFound,
    KeyRefused,
    KeyRevoked,
    LicensesInsufficient,
)
from service.models import KEY_ACTIVATION_FK, Activation, Installation, LicenseKey, WebhookEvent
from service.ratelimit import Limiter, client_name
from service.signing_keys import SigningKeys

MAX_KEYS = 50

COUNTED_FAILURES = (KeyNotFound, KeyAlreadyUsed, KeyRevoked)
"""The refusals that tell a guesser something about keys: limited per client. A malformed or repeated key
is refused offline, before the limiter, and an unknown installation or too few licenses say nothing of keys."""


@dataclass(frozen=True)
class ActivationResult:
    id: UUID
    installation: str
    activated_on: date
    renewal: rules.Renewal
    key_ids: tuple[UUID, ...]
    certificate: str
    replayed: bool = False


@dataclass(frozen=True)
class ActivationNotice:
    """What the installation's reseller is told of an activation (`activation.created`): the activation, and of its
    keys the ids of those the reseller sold (of every key, for an installation of no reseller's), None for the
    others: another reseller's keys are none of its business."""

    activation: ActivationResult
    key_ids: tuple[UUID | None, ...]

    @classmethod
    def of(
        cls, activation: ActivationResult, sellers: Sequence[UUID | None], reseller_id: UUID | None
    ) -> "ActivationNotice":
        """`sellers`: who sold each of the activation's keys, in the same order."""
        return cls(
            activation,
            tuple(
                installations.key_id_as_read(key_id, seller=seller, reader=reseller_id)
                for key_id, seller in zip(activation.key_ids, sellers, strict=True)
            ),
        )


KeySold = tuple[UUID, UUID | None]
"""A key of the request: its id, and the reseller it was issued to."""


def canonical_keys(raw_keys: list[str]) -> list[str]:
    """Normalize the keys of a request: a typo or a repeat is refused before any lookup, naming the key."""
    canonical = []
    for index, raw in enumerate(raw_keys):
        try:
            canonical.append(keyformat.normalize(raw))
        except KeyMalformed as refusal:
            refusal.index = index
            raise
    if len(set(canonical)) != len(canonical):
        index = next(i for i, key in enumerate(canonical) if key in canonical[:i])
        raise KeyDuplicated(index=index, prefix=keyformat.display_prefix(canonical[index]))
    return canonical


# The statements of the hot path, built once: each call only binds its values. Those that name the
# request's keys are built once per number of keys, each key a parameter `digest_<i>`.
def _digest_binds(count: int) -> list[BindParameter]:
    return [bindparam(f"digest_{i}") for i in range(count)]


def _digest_values(key_digests: list[bytes]) -> dict[str, bytes]:
    return {f"digest_{i}": digest for i, digest in enumerate(key_digests)}


class _KeyRow(NamedTuple):
    id: UUID
    digest: bytes
    status: str
    activation_id: UUID | None
    reseller_id: UUID | None


@lru_cache(maxsize=MAX_KEYS)
def _keys_by_digest(count: int) -> Rows[_KeyRow]:
    """The request's keys, locked in the order of their ids: every path that locks several keys (this one, the
    one-statement activation, a void) takes them in that order, so that two of them never wait on each other."""
    return Rows(
        select(LicenseKey.id, LicenseKey.digest, LicenseKey.status, LicenseKey.activation_id, LicenseKey.reseller_id)
        .where(LicenseKey.digest.in_(_digest_binds(count)))
        .order_by(LicenseKey.id)
        .with_for_update(),
        _KeyRow,
    )


class _InstallationWithKey(NamedTuple):
    """An installation (`installations.COLUMNS`), and one of the request's keys, if any is known."""

    id: int
    code: str
    reseller_id: UUID | None
    anchor: date
    months: int
    bonus_months: int
    initial_months: int
    created_at: datetime
    key_id: UUID | None
    digest: bytes | None
    status: str | None
    key_reseller_id: UUID | None


@lru_cache(maxsize=MAX_KEYS)
def _installation_with_keys(count: int) -> Rows[_InstallationWithKey]:
    """The fresh path's one read, without locks: the installation by its code, with a row for each of the
    request's keys that is known (none: one row, its key columns null); no row, no such installation."""
    keys = LicenseKey.__table__.c
    return Rows(
        select(
            *installations.COLUMNS,
            keys.id.label("key_id"),
            keys.digest,
            keys.status,
            keys.reseller_id.label("key_reseller_id"),
        )
        .select_from(Installation.__table__.outerjoin(LicenseKey, keys.digest.in_(_digest_binds(count))))
        .where(Installation.code == bindparam("code")),
        _InstallationWithKey,
    )


_LEDGER_COLUMNS = (
    "installation_id",
    "activated_on",
    "licenses",
    "months_before",
    "months_added",
    "bonus_months",
    "support_end_before",
    "support_end_after",
    "requested_by",
    "certificate",
    "key_ids",
)
_EXTEND = (
    update(Installation)
    .where(Installation.id == bindparam("installation_id"))
    .values(months=bindparam("new_months"), bonus_months=Installation.bonus_months + bindparam("bonus"))
)


@lru_cache(maxsize=MAX_KEYS)
def _take_keys(count: int) -> Update:
    """Take the keys that are still issued; the keys taken."""
    return (
        update(LicenseKey)
        .where(LicenseKey.digest.in_(_digest_binds(count)), LicenseKey.status == "issued")
        .values(status="used", activation_id=bindparam("activation"), used_at=bindparam("when"))
        .returning(LicenseKey.id, LicenseKey.digest)
    )


class _Taken(NamedTuple):
    id: UUID
    digest: bytes


@lru_cache(maxsize=MAX_KEYS)
def _record_in_one_statement(count: int) -> Rows[_Taken]:
    """An activation's writes as one statement of data-modifying CTEs, which stands alone, without a
    transaction around it, in one round trip:

    - `unchanged` locks the installation if it is still as it was read (not moved on by another activation
      since; the lock is taken before any key's, in the same order as `_activate_checked` takes them);
    - `locked` locks the request's keys, if so, in the order of their ids (as `_keys_by_digest` does);
    - `taken` takes those that are still issued;
    - `extended`, `moved` and `ledger` extend the installation, store its support end and write the ledger row
      only if every key was taken;
    - `outbox` writes its `activation.created` event, its body as it will be sent, only then too.

    Keys taken without their ledger row would break the keys' foreign key to it, which refuses the whole
    statement: so it writes everything or nothing. The keys taken: all of them, or none."""
    unchanged = (
        select(Installation.id)
        .where(
            Installation.id == bindparam("installation_id"),
            Installation.anchor == bindparam("anchor"),
            Installation.months == bindparam("months_before"),
        )
        .with_for_update()
        .cte("unchanged")
    )
    locked = (
        select(LicenseKey.id)
        .where(LicenseKey.digest.in_(_digest_binds(count)), exists(unchanged.select()))
        .order_by(LicenseKey.id)
        .with_for_update()
        .cte("locked")
    )
    taken = _take_keys(count).where(LicenseKey.id.in_(locked.select())).cte("taken")
    every_key_taken = select(func.count()).select_from(taken).scalar_subquery() == bindparam("licenses")
    extended = _EXTEND.where(exists(unchanged.select()), every_key_taken).returning(Installation.id).cte("extended")
    moved = installations.STORE_SUPPORT_END.where(exists(extended.select())).cte("moved")
    columns = Activation.__table__.c
    ledger_row = select(
        bindparam("activation", type_=columns.id.type),
        *(bindparam(name, type_=columns[name].type) for name in _LEDGER_COLUMNS),
    )
    ledger = insert(Activation).from_select(["id", *_LEDGER_COLUMNS], ledger_row.where(exists(extended.select())))
    return Rows(select(taken.c.id, taken.c.digest).add_cte(ledger.cte("ledger"), moved, _outbox(extended)), _Taken)


def _outbox(extended: Any) -> Any:
    """The event's row, its values bound as `webhooks.Event.params` gives them, if `extended` was."""
    columns = WebhookEvent.__table__.c
    names = ("id", "type", "occurred_at", "reseller_id", "body", "traceparent")
    row = select(*(bindparam(webhooks.EVENT_COLUMNS[name], type_=columns[name].type) for name in names))
    return insert(WebhookEvent).from_select(names, row.where(exists(extended.select()))).cte("outbox")


# The ledger's other columns, in their order, as the function takes them after the installation's own.
_LEDGER_FIGURES = tuple(name for name in _LEDGER_COLUMNS if name not in ("installation_id", "months_before", "key_ids"))


def _record_by_function() -> Rows[_Taken]:
    """`_record_in_one_statement` as the database's function `record_activation` (migration 0017), whose plan
    PostgreSQL keeps for its connection: for a transaction-mode pooler, where the service prepares nothing and
    every statement of its own is planned each time it runs. The same values, the request's keys' digests as one
    array (`digests`)."""
    a, i, k, e = (model.__table__.c for model in (Activation, Installation, LicenseKey, WebhookEvent))
    arguments = [
        bindparam("activation", type_=a.id.type),
        bindparam("installation_id", type_=a.installation_id.type),
        bindparam("anchor", type_=i.anchor.type),
        bindparam("months_before", type_=a.months_before.type),
        bindparam("digests", type_=ARRAY(k.digest.type)),
        bindparam("key_ids", type_=a.key_ids.type),
        bindparam("when", type_=k.used_at.type),
        bindparam("new_months", type_=i.months.type),
        bindparam("bonus", type_=i.bonus_months.type),
        *(bindparam(name, type_=a[name].type) for name in _LEDGER_FIGURES),
        *(
            bindparam(webhooks.EVENT_COLUMNS[name], type_=e[name].type)
            for name in ("id", "type", "occurred_at", "reseller_id", "body", "traceparent")
        ),
    ]
    taken = func.record_activation(*arguments).table_valued(column("id", k.id.type), column("digest", k.digest.type))
    return Rows(select(taken.c.id, taken.c.digest), _Taken)


_RECORD_BY_FUNCTION = _record_by_function()


class _ActivationRow(NamedTuple):
    id: UUID
    installation_id: int
    activated_on: date
    licenses: int
    months_before: int
    voided_at: datetime | None
    certificate: str | None
    key_ids: list[UUID]


_ACTIVATION = Rows(
    select(
        Activation.id,
        Activation.installation_id,
        Activation.activated_on,
        Activation.licenses,
        Activation.months_before,
        Activation.voided_at,
        Activation.certificate,
        Activation.key_ids,
    ).where(Activation.id == bindparam("id")),
    _ActivationRow,
)


# `_write` with the request's values bound: the same write ends both ways of activating.
_Write = Callable[
    [Session, installations.InstallationRecord, rules.Renewal, Mapping[bytes, KeySold]],
    Awaitable[ActivationResult | None],
]
# `_reissue` with the request's values bound: a replay's certificate.
_Reissue = Callable[[str | None, str, date, date], str]


@retried
async def activate(
    *,
    driver: Driver,
    limiter: Limiter,
    client: str,
    code: str,
    raw_keys: list[str],
    today: date,
    now: datetime,
    secret: bytes,
    unit_price_minor: int,
    signing_keys: SigningKeys,
) -> ActivationResult:
    """Activate `raw_keys` on installation `code` for `client` (an address, also the ledger's `requested_by`)."""
    canonical = canonical_keys(raw_keys)
    key_digests = [keyformat.digest(key, secret) for key in canonical]
    try:
        async with limiter.attempt(limits={client_name(client): limiter.limit}, failures=COUNTED_FAILURES):
            # This process's copy of the key set, read from the database only when due: before any connection is
            # taken, so that a read of it never waits for a connection that its own request holds.
            signer = (await signing_keys.current()).signer(now)
            write = partial(
                _write,
                code=code,
                key_digests=key_digests,
                today=today,
                now=now,
                signer=signer,
                requested_by=client,
                by_function=driver.plans_every_statement,
            )
            try:
                return await _activate_fresh(driver, code, key_digests, today, write)
            except _Undecided:
                reissue = partial(_reissue, signer=signer, now=now)
                return await _activate_checked(driver, code, key_digests, today, unit_price_minor, write, reissue)
    except KeyRefused as refusal:
        if refusal.index is not None:
            refusal.prefix = keyformat.display_prefix(canonical[refusal.index])
        raise


async def _activate_fresh(
    driver: Driver, code: str, key_digests: list[bytes], today: date, write: _Write
) -> ActivationResult:
    """The common case, without locking first: every key known and still issued, and support brought current
    (R6). The installation and the keys are read in one statement, and written only if still as read
    (`_record_in_one_statement`). Anything else raises `_Undecided`, with nothing written."""
    async with driver.single_write() as session:
        rows = await session.all(
            _installation_with_keys(len(key_digests)), {"code": code, **_digest_values(key_digests)}
        )
        if not rows:
            raise _Undecided()  # no such installation: the checked path says so
        fresh = {
            row.digest: (row.key_id, row.key_reseller_id)
            for row in rows
            if row.status == "issued" and row.digest is not None and row.key_id is not None
        }
        if len(fresh) != len(key_digests):
            raise _Undecided()
        first = rows[0]
        installation = installations.record_of(installations.InstallationRow._make(first[: len(installations.COLUMNS)]))
        try:
            renewal = rules.activate(installation.support, len(key_digests), today)
        except LicensesInsufficient:
            raise _Undecided() from None
        result = await write(session, installation, renewal, fresh)
        if result is None:
            raise _Undecided()
        return result


async def _activate_checked(
    driver: Driver,
    code: str,
    key_digests: list[bytes],
    today: date,
    unit_price_minor: int,
    write: _Write,
    reissue: _Reissue,
) -> ActivationResult:
    """Every key read first, so that each refusal says what is wrong, and a replay answers as the first time."""
    async with driver.transaction() as session:
        installation = await installations.find(session, code, for_update=True)
        keys = await session.all(_keys_by_digest(len(key_digests)), _digest_values(key_digests))
        by_digest = {key.digest: key for key in keys}
        refused = _refused(key_digests, by_digest)
        if len(keys) != len(key_digests):
            raise KeyNotFound(N_("At least one key is unknown"), refused=refused)
        ordered = [by_digest[d] for d in key_digests]

        replay = await _replay(session, installation, ordered, reissue)
        if replay is not None:
            return replay
        for refusal in (KeyRevoked, KeyAlreadyUsed):
            if refusal.code in refused.values():
                raise refusal(refused=refused)

        try:
            renewal = rules.activate(installation.support, len(ordered), today)
        except LicensesInsufficient as refusal:
            refusal.quote = rules.quote(installation.support, today, unit_price_minor)
            raise

        result = await write(
            session, installation, renewal, {d: (key.id, key.reseller_id) for d, key in by_digest.items()}
        )
        if result is None:
            raise KeyAlreadyUsed()  # another transaction took one after we read it: nothing is written
        return result


_REFUSED_STATUS = {"revoked": KeyRevoked.code, "used": KeyAlreadyUsed.code}


def _refused(key_digests: list[bytes], by_digest: Mapping[bytes, _KeyRow]) -> dict[int, str]:
    """Why each key that cannot be used is refused, by its position in the request (a replay's used keys too:
    only read when the activation is refused)."""
    refused = {}
    for position, key_digest in enumerate(key_digests):
        key = by_digest.get(key_digest)
        if key is None:
            refused[position] = KeyNotFound.code
        elif key.status in _REFUSED_STATUS:
            refused[position] = _REFUSED_STATUS[key.status]
    return refused


class _Undecided(Exception):
    """The common case did not apply (its attempt wrote nothing, or is rolled back): decide with every key read."""


async def _write(
    session: Session,
    installation: installations.InstallationRecord,
    renewal: rules.Renewal,
    keys: Mapping[bytes, KeySold],
    *,
    code: str,
    key_digests: list[bytes],
    today: date,
    now: datetime,
    signer: CertificateSigner,
    requested_by: str | None,
    by_function: bool,
) -> ActivationResult | None:
    """Write the activation, taking each key only while it is still issued; None when a key could not be
    taken, with nothing written (see `_record`)."""
    certificate = await signer.certificate_in_turn(code, renewal.after.end, today, now)
    activation_id = uuid4()
    sold = [keys[d] for d in key_digests]
    key_ids = [key_id for key_id, _ in sold]
    result = ActivationResult(activation_id, code, today, renewal, tuple(key_ids), certificate)
    reseller_id = installation.reseller_id
    notice = ActivationNotice.of(result, [seller for _, seller in sold], reseller_id)
    event = webhooks.Event.of(webhooks.ACTIVATION_CREATED, notice, reseller_id=reseller_id, now=now)
    taken = await _record(
        session,
        key_digests,
        by_function,
        {
            "activation": activation_id,
            "installation_id": installation.id,
            "anchor": installation.support.anchor,
            "activated_on": today,
            "licenses": len(key_digests),
            "months_before": renewal.before.months,
            "months_added": renewal.months_added,
            "bonus_months": renewal.bonus_months,
            "support_end_before": renewal.before.end,
            "support_end_after": renewal.after.end,
            "support_end": renewal.after.end,
            "requested_by": requested_by,
            "certificate": certificate,
            "key_ids": key_ids,
            "when": now,
            "new_months": renewal.after.months,
            "bonus": renewal.bonus_months,
            **event.params,
        },
    )
    if len(taken) != len(key_digests):
        return None
    return result


async def _record(
    session: Session, key_digests: list[bytes], by_function: bool, params: dict[str, Any]
) -> list[_Taken]:
    """Write an activation in one statement (`_record_in_one_statement`, or its function where every statement is
    planned each time: `_record_by_function`): its ledger row, its keys taken (each only while still issued), the
    installation extended, its support end stored and its event. The keys taken; none when nothing is written."""
    try:
        if by_function:
            return await session.all(_RECORD_BY_FUNCTION, {**params, "digests": key_digests})
        return await session.all(_record_in_one_statement(len(key_digests)), {**params, **_digest_values(key_digests)})
    except Refused as refusal:
        if refusal.constraint != KEY_ACTIVATION_FK:
            raise
        return []


def _reissue(
    stored: str | None, code: str, support_end: date, as_of: date, *, signer: CertificateSigner, now: datetime
) -> str:
    """The certificate an activation first gave while it is unexpired; otherwise (or for one stored before
    certificates expired) the same statement signed afresh."""
    expires = None if stored is None else certificates.expires(stored)
    if stored is not None and expires is not None and now.timestamp() < expires:
        return stored
    return signer.certificate(code, support_end, as_of, now)


async def _replay(
    session: Session,
    installation: installations.InstallationRecord,
    keys: Sequence[_KeyRow],
    reissue: _Reissue,
) -> ActivationResult | None:
    """R10: the same keys, already used together in one activation of this installation, give back
    that activation's result unchanged, with a certificate still valid."""
    activation_ids = {key.activation_id for key in keys}
    if len(activation_ids) != 1 or None in activation_ids:
        return None
    activation = await session.first(_ACTIVATION, {"id": activation_ids.pop()})
    assert activation is not None, "a used key's activation exists (its foreign key)"
    if (
        activation.installation_id != installation.id
        or activation.licenses != len(keys)
        or activation.voided_at is not None
    ):
        return None
    before = rules.Support(installation.support.anchor, activation.months_before)
    renewal = rules.renew(before, activation.licenses, activation.activated_on)
    return ActivationResult(
        activation.id,
        installation.code,
        activation.activated_on,
        renewal,
        tuple(activation.key_ids),
        reissue(activation.certificate, installation.code, renewal.after.end, activation.activated_on),
        replayed=True,
    )
