"""The activation ledger is the truth: an installation's support is what folding its live
(not voided) activations, in the order they were applied, through the rules gives.

Ledger rows keep the figures they had when they were applied (history); voiding one marks it
and recomputes the installation from the rows that remain, on their original days. Only the newest live
activations are ever voided: every later live activation was computed on the support an earlier one gave, so
voiding that one alone would leave them standing on support that no longer was (R6). So the live ledger is
always a ledger the rules accepted, activation by activation.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import Uuid, any_, bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY

from service import installations, pagination, rules, webhooks
from service.audit import Pending
from service.auth import Principal
from service.driver import Driver, Rows, Session, retried
from service.errors import ActivationNotFound, VoidHasDependents
from service.models import Activation, Installation, LicenseKey, SupportEnd
from service.pagination import Page


class _LiveActivation(NamedTuple):
    id: UUID
    installation_id: int
    activated_on: date
    licenses: int


# months_before grows strictly with every activation applied, so it is the order of application.
_LIVE_ACTIVATIONS = (
    select(Activation.id, Activation.installation_id, Activation.activated_on, Activation.licenses)
    .where(Activation.voided_at.is_(None))
    .order_by(Activation.installation_id, Activation.months_before, Activation.created_at)
)


@dataclass(frozen=True)
class Folded:
    months: int
    bonus_months: int
    support_end: date


def fold(start: rules.Support, activations: list[tuple]) -> Folded:
    folded = rules.fold(start, activations)
    return Folded(folded.after.months, folded.bonus_months, folded.after.end)


@dataclass(frozen=True)
class Drift:
    """The installation's stored support differs from its ledger's."""

    code: str
    stored: Folded
    ledger: Folded


@dataclass(frozen=True)
class Impossible:
    """A live activation that R6 would have refused where it stands in its installation's ledger."""

    code: str
    activation_id: UUID
    activated_on: date


class _StoredSupport(NamedTuple):
    id: int
    code: str
    anchor: date
    initial_months: int
    months: int
    bonus_months: int
    support_end: date


_INSTALLATIONS_AFTER = Rows(
    select(
        Installation.id,
        Installation.code,
        Installation.anchor,
        Installation.initial_months,
        Installation.months,
        Installation.bonus_months,
        SupportEnd.support_end,
    )
    .join(SupportEnd, SupportEnd.installation_id == Installation.id)
    .where(Installation.id > bindparam("after"))
    .order_by(Installation.id)
    .limit(bindparam("batch")),
    _StoredSupport,
)
_LIVE_ACTIVATIONS_BETWEEN = Rows(
    _LIVE_ACTIVATIONS.where(Activation.installation_id.between(bindparam("first"), bindparam("last"))),
    _LiveActivation,
)
_LIVE_ACTIVATIONS_OF = Rows(_LIVE_ACTIVATIONS.where(Activation.installation_id == bindparam("id")), _LiveActivation)


async def verify(*, driver: Driver, batch: int = 1000) -> list[Drift | Impossible]:
    """Every installation whose stored support differs from its ledger, and every live activation that R6 would
    have refused in its ledger."""
    findings: list[Drift | Impossible] = []
    last_id = 0
    async with driver.reading() as session:
        while True:
            rows = await session.all(_INSTALLATIONS_AFTER, {"after": last_id, "batch": batch})
            if not rows:
                return findings
            last_id = rows[-1].id
            ledgers: dict[int, list[_LiveActivation]] = {}
            for a in await session.all(_LIVE_ACTIVATIONS_BETWEEN, {"first": rows[0].id, "last": last_id}):
                ledgers.setdefault(a.installation_id, []).append(a)
            for row in rows:
                start = rules.Support(row.anchor, row.initial_months)
                ledger = ledgers.get(row.id, [])
                applied = [(a.activated_on, a.licenses) for a in ledger]
                folded = fold(start, applied)
                stored = Folded(row.months, row.bonus_months, row.support_end)
                if stored != folded:
                    findings.append(Drift(row.code, stored, folded))
                for position in rules.refused_in_fold(start, applied):
                    activation = ledger[position]
                    findings.append(Impossible(row.code, activation.id, activation.activated_on))


@dataclass(frozen=True)
class VoidResult:
    activation_id: UUID
    installation: str
    voided_at: datetime
    reason: str
    support_end: date
    voided: tuple[UUID, ...]
    """Every activation this request voided, newest first: the one asked for last."""
    revoked_keys: tuple[UUID, ...]
    """Every key this request revoked."""


class _Code(NamedTuple):
    code: str


class _VoidState(NamedTuple):
    voided_at: datetime | None
    void_reason: str | None


class _Revoked(NamedTuple):
    id: UUID
    reseller_id: UUID | None


_CODE_OF_ACTIVATION = Rows(select(Installation.code).join(Activation).where(Activation.id == bindparam("id")), _Code)
_VOID_STATE = Rows(
    select(Activation.voided_at, Activation.void_reason).where(Activation.id == bindparam("id")), _VoidState
)
_VOID = (
    update(Activation)
    .where(Activation.id == bindparam("activation_id"))
    .values(voided_at=bindparam("now"), void_reason=bindparam("reason"))
)
# The keys still used by the installation's void activations (those just voided), locked in the order of their ids,
# as every path that locks several keys does, then revoked.
_KEYS_TO_REVOKE = (
    select(LicenseKey.id)
    .where(
        LicenseKey.status == "used",
        LicenseKey.id.in_(
            select(func.unnest(Activation.key_ids)).where(
                Activation.installation_id == bindparam("installation_id"), Activation.voided_at.is_not(None)
            )
        ),
    )
    .order_by(LicenseKey.id)
    .with_for_update()
)
_REVOKE_KEYS = Rows(
    update(LicenseKey)
    .where(LicenseKey.id.in_(_KEYS_TO_REVOKE.scalar_subquery()))
    .values(status="revoked", revoked_at=bindparam("now"))
    .returning(LicenseKey.id, LicenseKey.reseller_id),
    _Revoked,
)
_STORE_FOLDED = (
    update(Installation)
    .where(Installation.id == bindparam("installation_id"))
    .values(months=bindparam("months"), bonus_months=bindparam("bonus_months"))
)


@retried
async def void(
    *,
    driver: Driver,
    activation_id: UUID,
    reason: str,
    now: datetime,
    cascade: bool = False,
    previewed: Sequence[UUID] | None = None,
    audit: Pending[VoidResult] | None = None,
) -> VoidResult:
    """Void an activation (a refund, a mistake): it stays in the ledger marked void, its keys are
    revoked, and the installation is recomputed. Voiding a void activation changes nothing.

    Every later live activation of the installation was computed on it: `VoidHasDependents` unless `cascade`,
    and then they are voided too, newest first. `previewed`: the dependents a person was shown and confirmed;
    a cascade refuses (`VoidHasDependents`, naming those now) when they are no longer the ones found, so that it
    voids nothing it did not show."""
    async with driver.transaction() as session:
        found = await session.first(_CODE_OF_ACTIVATION, {"id": activation_id})
        if found is None:
            raise ActivationNotFound()
        code = found.code
        installation = await installations.find(session, code, for_update=True)
        activation = await session.first(_VOID_STATE, {"id": activation_id})
        assert activation is not None, "the activation was found above, and activations are never deleted"
        if activation.voided_at is None:
            live = [row.id for row in await session.all(_LIVE_ACTIVATIONS_OF, {"id": installation.id})]
            position = live.index(activation_id)
            dependents = live[position + 1 :]
            if dependents and (not cascade or (previewed is not None and list(previewed) != dependents)):
                raise VoidHasDependents(dependents)
            voided = tuple(reversed(live[position:]))
            for voiding in voided:
                await session.execute(_VOID, {"activation_id": voiding, "now": now, "reason": reason})
            revoked = await session.all(_REVOKE_KEYS, {"installation_id": installation.id, "now": now})
            folded = await _refold(session, installation)
            revoked_keys = tuple(sorted(row.id for row in revoked))
            result = VoidResult(activation_id, code, now, reason, folded.support_end, voided, revoked_keys)
            # The reseller's event names its own keys only: another reseller's are none of its business.
            owner = installation.reseller_id
            sold = tuple(sorted(row.id for row in revoked if owner is None or row.reseller_id == owner))
            for each in voided:
                await _announce(session, replace(result, activation_id=each, revoked_keys=sold), installation)
        else:
            assert activation.void_reason is not None, "a void activation has its reason (`_VOID` writes both)"
            result = VoidResult(
                activation_id, code, activation.voided_at, activation.void_reason, installation.support.end, (), ()
            )
        if audit is not None:
            await audit.write(session, result)
    return result


async def _announce(session: Session, voided: VoidResult, installation: installations.InstallationRecord) -> None:
    """The `activation.voided` event of one activation voided, in the voiding transaction: the request's answer,
    naming that activation (a cascade announces each activation it voided)."""
    event = webhooks.Event.of(
        webhooks.ACTIVATION_VOIDED, voided, reseller_id=installation.reseller_id, now=voided.voided_at
    )
    await webhooks.emit(session, event)


async def _refold(session: Session, installation: installations.InstallationRecord) -> Folded:
    ledger = await session.all(_LIVE_ACTIVATIONS_OF, {"id": installation.id})
    folded = fold(installation.start, [(a.activated_on, a.licenses) for a in ledger])
    params = {
        "installation_id": installation.id,
        "months": folded.months,
        "support_end": folded.support_end,
        "bonus_months": folded.bonus_months,
    }
    await session.execute(_STORE_FOLDED, params)
    await session.execute(installations.STORE_SUPPORT_END, params)
    return folded


# --- The ledger across installations, as admins and resellers read it


@dataclass(frozen=True)
class LedgerEntry:
    installation: str
    reseller_id: UUID | None
    created_at: datetime
    activation: installations.ActivationSummary


class _EntryRow(NamedTuple):
    id: UUID
    activated_on: date
    licenses: int
    support_end_before: date
    support_end_after: date
    months_added: int
    bonus_months: int
    voided_at: datetime | None
    void_reason: str | None
    created_at: datetime
    code: str
    reseller_id: UUID | None

    @property
    def activation(self) -> installations.ActivationRow:
        """Its first columns, `installations.SUMMARY_COLUMNS`."""
        return installations.ActivationRow(
            self.id,
            self.activated_on,
            self.licenses,
            self.support_end_before,
            self.support_end_after,
            self.months_added,
            self.bonus_months,
            self.voided_at,
            self.void_reason,
        )


_ENTRIES = (
    select(*installations.SUMMARY_COLUMNS, Activation.created_at, Installation.code, Installation.reseller_id)
    .join(Installation, Installation.id == Activation.installation_id)
    .order_by(Activation.created_at, Activation.id)
)
_KEYS_OF_ACTIVATIONS = installations.keys_of_activations(Activation.id == any_(bindparam("ids", type_=ARRAY(Uuid))))


async def entries(
    *,
    driver: Driver,
    principal: Principal,
    installation: str | None = None,
    reseller_id: UUID | None = None,
    activated_from: date | None = None,
    activated_to: date | None = None,
    voided: bool | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[LedgerEntry]:
    """A page of activations in the order they were recorded (on `ix_activations_created_at_id`): an admin's of
    every installation (or of one reseller's), a reseller's of its own installations."""
    if reseller_id is not None:
        principal.require_owner(reseller_id)
    owner = reseller_id if principal.is_admin else principal.reseller_id
    statement = _ENTRIES.limit(limit + 1)  # one more than the page: whether another page follows
    if owner is not None:
        statement = statement.where(Installation.reseller_id == owner)
    if installation is not None:
        statement = statement.where(Installation.code == installation)
    if activated_from is not None:
        statement = statement.where(Activation.activated_on >= activated_from)
    if activated_to is not None:
        statement = statement.where(Activation.activated_on <= activated_to)
    if voided is not None:
        statement = statement.where(Activation.voided_at.is_not(None) if voided else Activation.voided_at.is_(None))
    if cursor is not None:
        after = pagination.decode(cursor, datetime, UUID)
        statement = statement.where(tuple_(Activation.created_at, Activation.id) > tuple_(*after))
    async with driver.reading() as session:
        rows = await session.all(Rows(statement, _EntryRow), {})
        keys = await session.all(_KEYS_OF_ACTIVATIONS, {"ids": [row.activation.id for row in rows[:limit]]})
    summaries = installations.summaries([row.activation for row in rows], keys, reader=principal.reseller_id)
    found = [
        LedgerEntry(row.code, row.reseller_id, row.created_at, summary)
        for row, summary in zip(rows, summaries, strict=True)
    ]
    return pagination.page_of(found, limit, lambda entry: (entry.created_at, entry.activation.id))
