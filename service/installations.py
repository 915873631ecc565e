"""Installations: registering them, reading their support state and quoting their renewal."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import ColumnElement, Select, bindparam, func, insert, select, true, tuple_, update

from service import pagination, resellers, rules, webhooks
from service.audit import Pending
from service.auth import Principal
from service.driver import Driver, Duplicate, Rows, Session, retried
from service.errors import N_, Forbidden, InstallationExists, InstallationNotFound, PurchaseTooOld
from service.models import Activation, Installation, LicenseKey, SupportEnd
from service.pagination import Page


@dataclass(frozen=True)
class InstallationRecord:
    id: int
    code: str
    reseller_id: UUID | None
    support: rules.Support
    bonus_months: int
    initial_months: int
    created_at: datetime | None = None

    @property
    def start(self) -> rules.Support:
        """Support as registered, before any activation: where the ledger is folded from."""
        return rules.Support(self.support.anchor, self.initial_months)


@dataclass(frozen=True)
class SupportState:
    code: str
    support: rules.Support
    bonus_months: int
    as_of: date

    @property
    def active(self) -> bool:
        return self.support.is_active(self.as_of)

    @property
    def days_left(self) -> int:
        return max((self.support.end - self.as_of).days, 0)


@dataclass(frozen=True)
class ActivationSummary:
    id: UUID
    activated_on: date
    licenses: int
    support_end_before: date
    support_end_after: date
    months_added: int
    bonus_months: int
    key_ids: tuple[UUID | None, ...]
    """Null for a key another reseller sold, when a reseller reads it (`summaries`)."""
    voided_at: datetime | None
    void_reason: str | None


COLUMNS = (
    Installation.id,
    Installation.code,
    Installation.reseller_id,
    Installation.anchor,
    Installation.months,
    Installation.bonus_months,
    Installation.initial_months,
    Installation.created_at,
)


class InstallationRow(NamedTuple):
    """An installation as read (`COLUMNS`)."""

    id: int
    code: str
    reseller_id: UUID | None
    anchor: date
    months: int
    bonus_months: int
    initial_months: int
    created_at: datetime


def record_of(row: InstallationRow) -> InstallationRecord:
    return InstallationRecord(
        id=row.id,
        code=row.code,
        reseller_id=row.reseller_id,
        support=rules.Support(row.anchor, row.months),
        bonus_months=row.bonus_months,
        initial_months=row.initial_months,
        created_at=row.created_at,
    )


_FIND = Rows(select(*COLUMNS).where(Installation.code == bindparam("code")), InstallationRow)
_FIND_FOR_UPDATE = Rows(
    select(*COLUMNS).where(Installation.code == bindparam("code")).with_for_update(), InstallationRow
)


async def find(session: Session, code: str, for_update: bool = False) -> InstallationRecord:
    row = await session.first(_FIND_FOR_UPDATE if for_update else _FIND, {"code": code})
    if row is None:
        raise InstallationNotFound(N_("No installation has the code %(code)s"), code=code)
    return record_of(row)


@retried
async def register(
    *,
    driver: Driver,
    principal: Principal,
    code: str,
    today: date,
    now: datetime,
    purchased_on: date | None = None,
    support_end: date | None = None,
    reseller_id: UUID | None = None,
    purchase_max_age_days: int,
    audit: Pending[InstallationRecord] | None = None,
) -> InstallationRecord:
    """R3 for a new sale (`purchased_on`), R2 for an existing customer (`support_end`).
    A reseller always registers for itself; an admin may name the reseller.

    What a reseller says is not taken on trust: only an admin moves an existing customer in (a support end
    is whatever the caller says it is), and a reseller's sale is at most `purchase_max_age_days` old, so that
    an old sale cannot be registered for a fresh year. An admin may register any date."""
    if reseller_id is not None:
        principal.require_owner(reseller_id)
    if support_end is not None:
        if not principal.is_admin:
            raise Forbidden(N_("Only an administrator registers an existing customer by its support end"))
        support = rules.existing_customer(support_end)
    else:
        assert purchased_on is not None, (
            "a registration gives exactly one of the two (schemas.installations.InstallationIn)"
        )
        support = rules.purchase(purchased_on, today)
        if not principal.is_admin and purchased_on < today - timedelta(days=purchase_max_age_days):
            raise PurchaseTooOld(
                N_(
                    "The purchase date %(purchased_on)s is more than %(days)d days before today (%(today)s); "
                    "ask an administrator"
                ),
                purchased_on=purchased_on.isoformat(),
                days=purchase_max_age_days,
                today=today.isoformat(),
            )
    owner = reseller_id if principal.is_admin else principal.reseller_id
    values = {
        "code": code,
        "reseller_id": owner,
        "anchor": support.anchor,
        "initial_months": support.months,
        "months": support.months,
    }
    try:
        async with driver.transaction() as session:
            await resellers.require(session, owner)
            row = await session.first(_REGISTER, values)
            assert row is not None, "an insert returns its row"
            record = record_of(row)
            await session.execute(
                _REGISTER_SUPPORT_END, {"installation_id": record.id, "reseller_id": owner, "support_end": support.end}
            )
            await webhooks.emit(
                session, webhooks.Event.of(webhooks.INSTALLATION_REGISTERED, record, reseller_id=owner, now=now)
            )
            if audit is not None:
                await audit.write(session, record)
    except Duplicate as exc:
        raise InstallationExists() from exc
    return record


_REGISTER = Rows(
    insert(Installation)
    .values({column: bindparam(column) for column in ("code", "reseller_id", "anchor", "initial_months", "months")})
    .values(bonus_months=0)
    .returning(*COLUMNS),
    InstallationRow,
)
_REGISTER_SUPPORT_END = insert(SupportEnd).values(
    {column: bindparam(column) for column in ("installation_id", "reseller_id", "support_end")}
)
STORE_SUPPORT_END = (
    update(SupportEnd)
    .where(SupportEnd.installation_id == bindparam("installation_id"))
    .values(support_end=bindparam("support_end"))
)
"""Written with every change of an installation's `months`: its support end, as the rules compute it."""


class ActivationRow(NamedTuple):
    id: UUID
    activated_on: date
    licenses: int
    support_end_before: date
    support_end_after: date
    months_added: int
    bonus_months: int
    voided_at: datetime | None
    void_reason: str | None


class KeyOfActivation(NamedTuple):
    id: UUID
    activation_id: UUID
    reseller_id: UUID | None
    """Who the key was sold to."""


SUMMARY_COLUMNS = (
    Activation.id,
    Activation.activated_on,
    Activation.licenses,
    Activation.support_end_before,
    Activation.support_end_after,
    Activation.months_added,
    Activation.bonus_months,
    Activation.voided_at,
    Activation.void_reason,
)
"""An `ActivationRow`'s columns."""
_ACTIVATIONS_OF = Rows(
    select(*SUMMARY_COLUMNS)
    .where(Activation.installation_id == bindparam("id"))
    .order_by(Activation.months_before, Activation.created_at),  # the order they were applied in
    ActivationRow,
)


def keys_of_activations(*where: ColumnElement[bool]) -> Rows[KeyOfActivation]:
    """The keys of the activations `where` chooses, each activation's in the order it lists them (`key_ids`)."""
    listed = (
        func.unnest(Activation.key_ids).table_valued("key_id", with_ordinality="n").render_derived().lateral("listed")
    )
    return Rows(
        select(LicenseKey.id, Activation.id.label("activation_id"), LicenseKey.reseller_id)
        .select_from(Activation)
        .join(listed, true())
        .join(LicenseKey, LicenseKey.id == listed.c.key_id)
        .where(*where)
        .order_by(listed.c.n),
        KeyOfActivation,
    )


_KEYS_OF = keys_of_activations(Activation.installation_id == bindparam("id"))


async def details(
    *, driver: Driver, principal: Principal, code: str
) -> tuple[InstallationRecord, list[ActivationSummary]]:
    async with driver.reading() as session:
        installation = await find(session, code)
        principal.require_owner(installation.reseller_id)
        activations = await session.all(_ACTIVATIONS_OF, {"id": installation.id})
        keys = await session.all(_KEYS_OF, {"id": installation.id})
    return installation, summaries(activations, keys, reader=principal.reseller_id)


def key_id_as_read(key_id: UUID, *, seller: UUID | None, reader: UUID | None) -> UUID | None:
    """A key's id as `reader` may know it: a reseller the ids of the keys it sold only; everyone else (None: an
    admin, or the installation of no reseller) every id."""
    return key_id if reader is None or seller == reader else None


def summaries(
    activations: Sequence[ActivationRow], keys: Sequence[KeyOfActivation], *, reader: UUID | None
) -> list[ActivationSummary]:
    """Activations, each with the ids of the keys it used (`keys`, in the order each activation listed them). A
    reseller (`reader`; None: an admin) reads the ids of the keys it sold only, as its events tell them
    (`activations.ActivationNotice`): another reseller's keys are none of its business."""
    key_ids: dict[UUID, list[UUID | None]] = {}
    for key in keys:
        key_ids.setdefault(key.activation_id, []).append(key_id_as_read(key.id, seller=key.reseller_id, reader=reader))
    return [
        ActivationSummary(**activation._asdict(), key_ids=tuple(key_ids.get(activation.id, ())))
        for activation in activations
    ]


# Built once: the hot read only binds its code, and its compiled form is reused.
class _SupportRow(NamedTuple):
    anchor: date
    months: int
    bonus_months: int


_SUPPORT_READ = Rows(
    select(Installation.anchor, Installation.months, Installation.bonus_months).where(
        Installation.code == bindparam("code")
    ),
    _SupportRow,
)


async def _read_support(driver: Driver, code: str) -> _SupportRow:
    row = await driver.first(_SUPPORT_READ, {"code": code})
    if row is None:
        raise InstallationNotFound(N_("No installation has the code %(code)s"), code=code)
    return row


async def support_state(*, driver: Driver, code: str, today: date) -> SupportState:
    row = await _read_support(driver, code)
    return SupportState(code, rules.Support(row.anchor, row.months), row.bonus_months, today)


async def quote(
    *, driver: Driver, code: str, on: date, unit_price_minor: int, licenses: int | None = None
) -> rules.Quote:
    row = await _read_support(driver, code)
    return rules.quote(rules.Support(row.anchor, row.months), on, unit_price_minor, licenses)


# --- The renewal pipeline: a reseller's installations by support end


@dataclass(frozen=True)
class PipelineRow:
    code: str
    reseller_id: UUID | None
    support: SupportState
    state: str
    """`rules.pipeline_state`: `active`, `expiring` or `lapsed`."""
    quote: rules.Quote
    """What renewing costs on the day listed."""


class _PipelineRow(NamedTuple):
    id: int
    code: str
    reseller_id: UUID | None
    anchor: date
    months: int
    bonus_months: int
    support_end: date


_PIPELINE = (
    select(
        Installation.id,
        Installation.code,
        Installation.reseller_id,
        Installation.anchor,
        Installation.months,
        Installation.bonus_months,
        SupportEnd.support_end,
    )
    .join(SupportEnd, SupportEnd.installation_id == Installation.id)
    .order_by(SupportEnd.support_end, SupportEnd.installation_id)
)


def _later(first: date | None, second: date | None) -> date | None:
    return max((d for d in (first, second) if d is not None), default=None)


def _earlier(first: date | None, second: date | None) -> date | None:
    return min((d for d in (first, second) if d is not None), default=None)


def pipeline_query(
    *,
    owner: UUID | None,
    support_end_from: date | None,
    support_end_to: date | None,
    code_prefix: str | None,
    after: tuple[date, int] | None,
    limit: int,
) -> Select:
    """The pipeline's SELECT (also what the benchmark explains): on `ix_support_ends_support_end_installation_id`,
    or for one owner `ix_support_ends_reseller_id_support_end_installation_id`, read in order from the cursor's
    position, each row's installation then read by its id."""
    statement = _PIPELINE.limit(limit)
    if owner is not None:
        statement = statement.where(SupportEnd.reseller_id == owner)
    if support_end_from is not None:
        statement = statement.where(SupportEnd.support_end >= support_end_from)
    if support_end_to is not None:
        statement = statement.where(SupportEnd.support_end <= support_end_to)
    if code_prefix is not None:
        statement = statement.where(Installation.code.startswith(code_prefix, autoescape=True))
    if after is not None:
        statement = statement.where(tuple_(SupportEnd.support_end, SupportEnd.installation_id) > tuple_(*after))
    return statement


async def pipeline(
    *,
    driver: Driver,
    principal: Principal,
    today: date,
    unit_price_minor: int,
    reseller_id: UUID | None = None,
    support_end_from: date | None = None,
    support_end_to: date | None = None,
    state: str | None = None,
    expiring_within_days: int = 60,
    code_prefix: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[PipelineRow]:
    """A page of installations in support-end order (then id): an admin's of every reseller (or of one), a
    reseller's own. Each row says where it stands today and what renewing it today costs (R7, R8)."""
    if reseller_id is not None:
        principal.require_owner(reseller_id)
    first, last = support_end_from, support_end_to
    if state is not None:
        state_first, state_last = rules.pipeline_support_ends(state, today, expiring_within_days)
        first, last = _later(first, state_first), _earlier(last, state_last)
    statement = pipeline_query(
        owner=reseller_id if principal.is_admin else principal.reseller_id,
        support_end_from=first,
        support_end_to=last,
        code_prefix=code_prefix,
        after=None if cursor is None else pagination.decode(cursor, date, int),
        limit=limit + 1,  # one more than the page: whether another page follows
    )
    async with driver.reading() as session:
        rows = await session.all(Rows(statement, _PipelineRow), {})
    page = pagination.page_of(rows, limit, lambda row: (row.support_end, row.id))
    return page.map(lambda row: _pipeline_row(row, today, unit_price_minor, expiring_within_days))


def _pipeline_row(row: _PipelineRow, today: date, unit_price_minor: int, expiring_within_days: int) -> PipelineRow:
    support = rules.Support(row.anchor, row.months)
    return PipelineRow(
        code=row.code,
        reseller_id=row.reseller_id,
        support=SupportState(row.code, support, row.bonus_months, today),
        state=rules.pipeline_state(support.end, today, expiring_within_days),
        quote=rules.quote(support, today, unit_price_minor),
    )
