"""Activating keys on an installation: atomic, replay-safe, serialized per installation.

The installation's row is locked (`FOR UPDATE`) for the whole transaction, and each key is taken
by a conditional update that only one transaction can win, so the guarantees hold across service
processes. Nothing is written unless every key is good and R6 is met.
"""

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import installations, keyformat, rules
from service.certificates import CertificateSigner
from service.db import transaction
from service.errors import KeyAlreadyUsed, KeyDuplicated, KeyNotFound, KeyRevoked, LicensesInsufficient
from service.models import Activation, Installation, LicenseKey


@dataclass(frozen=True)
class ActivationResult:
    id: UUID
    installation: str
    activated_on: date
    renewal: rules.Renewal
    key_ids: tuple[UUID, ...]
    certificate: str
    replayed: bool = False


def digests(raw_keys: list[str], secret: bytes) -> list[bytes]:
    """Normalize and hash the keys of a request: a typo or a repeat is refused before any lookup."""
    canonical = [keyformat.normalize(raw) for raw in raw_keys]
    if len(set(canonical)) != len(canonical):
        raise KeyDuplicated()
    return [keyformat.digest(key, secret) for key in canonical]


# The statements of the hot path, built once: each call only binds its values.
_KEYS_BY_DIGEST = select(LicenseKey.id, LicenseKey.digest, LicenseKey.status, LicenseKey.activation_id).where(
    LicenseKey.digest.in_(bindparam("digests", expanding=True)))
_RECORD = insert(Activation).returning(Activation.id)
_TAKE_KEY = (
    update(LicenseKey)
    .where(LicenseKey.id == bindparam("key_id"), LicenseKey.status == "issued")
    .values(status="used", activation_id=bindparam("by"), position=bindparam("at"), used_at=bindparam("when"))
)
_EXTEND = (
    update(Installation)
    .where(Installation.id == bindparam("installation_id"))
    .values(months=bindparam("new_months"), bonus_months=Installation.bonus_months + bindparam("bonus"))
)


async def activate(
    engine: AsyncEngine,
    code: str,
    raw_keys: list[str],
    today: date,
    now: datetime,
    secret: bytes,
    unit_price_minor: int,
    signer: CertificateSigner,
    requested_by: str | None = None,
) -> ActivationResult:
    key_digests = digests(raw_keys, secret)
    async with transaction(engine) as conn:
        installation = await installations.find(conn, code, for_update=True)
        keys = (await conn.execute(_KEYS_BY_DIGEST, {"digests": key_digests})).all()
        if len(keys) != len(key_digests):
            raise KeyNotFound("At least one key is unknown")
        by_digest = {key.digest: key for key in keys}
        ordered = [by_digest[d] for d in key_digests]

        replay = await _replay(conn, installation, ordered)
        if replay is not None:
            return replay
        if any(key.status == "revoked" for key in ordered):
            raise KeyRevoked()
        if any(key.status == "used" for key in ordered):
            raise KeyAlreadyUsed()

        try:
            renewal = rules.activate(installation.support, len(ordered), today)
        except LicensesInsufficient as refusal:
            refusal.quote = rules.quote(installation.support, today, unit_price_minor)
            raise

        certificate = signer.certificate(code, renewal.after.end, today, now)
        activation_id = await conn.scalar(_RECORD, {
            "installation_id": installation.id,
            "activated_on": today,
            "licenses": len(ordered),
            "months_before": renewal.before.months,
            "months_added": renewal.months_added,
            "bonus_months": renewal.bonus_months,
            "support_end_before": renewal.before.end,
            "support_end_after": renewal.after.end,
            "requested_by": requested_by,
            "certificate": certificate,
        })
        for position, key in enumerate(ordered):
            taken = await conn.execute(_TAKE_KEY, {"key_id": key.id, "by": activation_id, "at": position, "when": now})
            if taken.rowcount != 1:
                raise KeyAlreadyUsed()  # another transaction took it after we read it
        await conn.execute(_EXTEND, {"installation_id": installation.id, "new_months": renewal.after.months,
                                     "bonus": renewal.bonus_months})
    return ActivationResult(activation_id, code, today, renewal, tuple(key.id for key in ordered), certificate)


async def _replay(conn: AsyncConnection, installation: installations.InstallationRecord,
                  keys: list) -> ActivationResult | None:
    """R10: the same keys, already used together in one activation of this installation, give back
    that activation's result unchanged."""
    activation_ids = {key.activation_id for key in keys}
    if len(activation_ids) != 1 or None in activation_ids:
        return None
    activation = (await conn.execute(
        select(Activation).where(Activation.id == activation_ids.pop())
    )).one()
    if (activation.installation_id != installation.id or activation.licenses != len(keys)
            or activation.voided_at is not None):
        return None
    key_ids = (await conn.execute(
        select(LicenseKey.id).where(LicenseKey.activation_id == activation.id).order_by(LicenseKey.position)
    )).scalars().all()
    before = rules.Support(installation.support.anchor, activation.months_before)
    renewal = rules.renew(before, activation.licenses, activation.activated_on)
    return ActivationResult(activation.id, installation.code, activation.activated_on, renewal,
                            tuple(key_ids), activation.certificate, replayed=True)
