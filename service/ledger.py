"""The activation ledger is the truth: an installation's support is what folding its live
(not voided) activations, in the order they were applied, through the rules gives.

Ledger rows keep the figures they had when they were applied (history); voiding one marks it
and recomputes the installation from the rows that remain, on their original days.
"""

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import installations, rules
from service.db import reading, transaction
from service.driver import EngineSession
from service.errors import ActivationNotFound
from service.models import Activation, Installation, LicenseKey

# months_before grows strictly with every activation applied, so it is the order of application.
_LIVE_ACTIVATIONS = (
    select(Activation.installation_id, Activation.activated_on, Activation.licenses)
    .where(Activation.voided_at.is_(None))
    .order_by(Activation.installation_id, Activation.months_before, Activation.created_at)
)


@dataclass(frozen=True)
class Folded:
    months: int
    bonus_months: int


def fold(start: rules.Support, activations: list[tuple]) -> Folded:
    folded = rules.fold(start, activations)
    return Folded(folded.after.months, folded.bonus_months)


@dataclass(frozen=True)
class Drift:
    code: str
    stored: Folded
    ledger: Folded


async def verify(engine: AsyncEngine, batch: int = 1000) -> list[Drift]:
    """Every installation whose stored support differs from its ledger."""
    drifts: list[Drift] = []
    last_id = 0
    async with reading(engine) as conn:
        while True:
            rows = (
                await conn.execute(
                    select(
                        Installation.id,
                        Installation.code,
                        Installation.anchor,
                        Installation.initial_months,
                        Installation.months,
                        Installation.bonus_months,
                    )
                    .where(Installation.id > last_id)
                    .order_by(Installation.id)
                    .limit(batch)
                )
            ).all()
            if not rows:
                return drifts
            last_id = rows[-1].id
            ledgers: dict[int, list[tuple]] = {}
            for a in await conn.execute(
                _LIVE_ACTIVATIONS.where(Activation.installation_id.between(rows[0].id, last_id))
            ):
                ledgers.setdefault(a.installation_id, []).append((a.activated_on, a.licenses))
            for row in rows:
                folded = fold(rules.Support(row.anchor, row.initial_months), ledgers.get(row.id, []))
                stored = Folded(row.months, row.bonus_months)
                if stored != folded:
                    drifts.append(Drift(row.code, stored, folded))


@dataclass(frozen=True)
class VoidResult:
    activation_id: UUID
    installation: str
    voided_at: datetime
    reason: str
    support_end: date


async def void(engine: AsyncEngine, activation_id: UUID, reason: str, now: datetime) -> VoidResult:
    """Void an activation (a refund, a mistake): it stays in the ledger marked void, its keys are
    revoked, and the installation is recomputed. Voiding a void activation changes nothing."""
    async with transaction(engine) as conn:
        code = await conn.scalar(select(Installation.code).join(Activation).where(Activation.id == activation_id))
        if code is None:
            raise ActivationNotFound()
        installation = await installations.find(EngineSession(conn), code, for_update=True)
        activation = (
            await conn.execute(
                select(Activation.voided_at, Activation.void_reason).where(Activation.id == activation_id)
            )
        ).one()
        if activation.voided_at is None:
            await conn.execute(
                update(Activation).where(Activation.id == activation_id).values(voided_at=now, void_reason=reason)
            )
            await conn.execute(
                update(LicenseKey)
                .where(LicenseKey.activation_id == activation_id)
                .values(status="revoked", revoked_at=now)
            )
            folded = await _refold(conn, installation)
            support_end = rules.Support(installation.support.anchor, folded.months).end
            return VoidResult(activation_id, code, now, reason, support_end)
    return VoidResult(activation_id, code, activation.voided_at, activation.void_reason, installation.support.end)


async def _refold(conn: AsyncConnection, installation: installations.InstallationRecord) -> Folded:
    ledger = (await conn.execute(_LIVE_ACTIVATIONS.where(Activation.installation_id == installation.id))).all()
    folded = fold(installation.start, [(a.activated_on, a.licenses) for a in ledger])
    await conn.execute(
        update(Installation)
        .where(Installation.id == installation.id)
        .values(months=folded.months, bonus_months=folded.bonus_months)
    )
    return folded
