"""Activations: keys applied to an installation, and voided."""

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field

from service.activations import ActivationNotice, ActivationResult
from service.http.schemas.common import (
    EXAMPLE_ACTIVATION_ID,
    EXAMPLE_CERTIFICATE,
    EXAMPLE_KEY_ID,
    PAGE_ITEMS,
    Count,
    InstallationCode,
    Jwt,
    Note,
    PageOut,
    Request,
    StoredCode,
    Text,
    examples,
)
from service.http.schemas.installations import ACTIVATION_SUMMARY_EXAMPLE, ActivationSummaryOut
from service.ledger import LedgerEntry


class ActivationIn(Request):
    model_config = examples(
        {"installation": "ACME-0001", "keys": ["TXS-…(the key as printed)"]},
    )

    installation: InstallationCode
    keys: list[Annotated[Text, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=50)


class VoidIn(Request):
    reason: Text = Field(min_length=1, max_length=500, examples=["Refund, order 1234"])
    cascade: bool = Field(
        False,
        description="Void every later live activation of the installation too (each was computed on this one), "
        "newest first. Without it, an activation with later live ones is refused (`409 void_has_dependents`).",
    )


class VoidOut(BaseModel):
    model_config = examples(
        {
            "activation_id": EXAMPLE_ACTIVATION_ID,
            "installation": "ACME-0001",
            "voided_at": "2026-02-01T12:00:00Z",
            "reason": "Refund, order 1234",
            "support_end": "2026-03-15",
            "voided": [EXAMPLE_ACTIVATION_ID],
            "revoked_keys": [EXAMPLE_KEY_ID],
        },
        from_attributes=True,
    )

    activation_id: UUID
    installation: StoredCode
    voided_at: datetime
    reason: Note
    support_end: date = Field(description="The installation's support end after the activation was voided.")
    voided: list[UUID] = Field(
        description="Every activation this request voided, newest first (empty when it was void already)."
    )
    revoked_keys: list[UUID] = Field(description="Every key this request revoked.")


class LicensePeriodOut(BaseModel):
    """What one key of the activation added: a quote's `periods`, each with the key that paid for it."""

    model_config = ConfigDict(populate_by_name=True)

    key_id: UUID
    from_: date = Field(alias="from")
    to: date
    bonus_months: Count


class ActivationOut(BaseModel):
    model_config = examples(
        {
            "activation_id": EXAMPLE_ACTIVATION_ID,
            "installation": "ACME-0001",
            "activated_on": "2026-01-10",
            "support_end_before": "2026-03-15",
            "support_end_after": "2027-05-15",
            "months_added": 14,
            "licenses": 1,
            "periods": [{"key_id": EXAMPLE_KEY_ID, "from": "2026-03-16", "to": "2027-05-15", "bonus_months": 2}],
            "certificate": EXAMPLE_CERTIFICATE,
        }
    )

    activation_id: UUID
    installation: StoredCode
    activated_on: date
    support_end_before: date
    support_end_after: date
    months_added: Count
    licenses: int = Field(ge=1, le=50, description="How many keys (licenses) it used")
    periods: list[LicensePeriodOut] = Field(
        max_length=50, description="What each key added, in the order of the request's keys"
    )
    certificate: Jwt = Field(
        description="ES256 JWT stating the new support end; verify it with the pinned root (through its `x5c` header) "
        "or with /.well-known/jwks.json"
    )

    @staticmethod
    def json_of(result: ActivationResult) -> bytes:
        """This document as JSON, written straight from the activation's values, as `SupportOut.json_of`; and as
        that one, checked against this model by tests/test_api_hand_serialized.py (201 and replayed 200, one
        key and several, current and back-dated)."""
        return _activation_json(result, result.key_ids)


class SoldKeyPeriodOut(LicensePeriodOut):
    key_id: UUID | None = Field(  # type: ignore[assignment]  # the event's periods: an id only of one's own key
        description="The key's id, if the receiver's reseller sold it; null for a key another reseller sold."
    )


class ActivationCreatedData(ActivationOut):
    """An activation as its installation's reseller is told of it (`activation.created`): as the activation
    answered, less the ids of the keys that another reseller sold."""

    periods: list[SoldKeyPeriodOut] = Field(  # type: ignore[assignment]
        max_length=50, description="What each key added, in the order of the activation's keys"
    )

    @staticmethod
    def json_of(notice: ActivationNotice) -> bytes:  # type: ignore[override]
        """As `ActivationOut.json_of`, checked against this model by tests/test_webhooks.py."""
        return _activation_json(notice.activation, notice.key_ids)


class LedgerEntryOut(ActivationSummaryOut):
    installation: StoredCode = Field(description="The installation's code.")
    reseller_id: UUID | None
    created_at: datetime = Field(description="When it was recorded: the ledger's order.")

    @classmethod
    def of_entry(cls, entry: LedgerEntry) -> "LedgerEntryOut":
        summary = ActivationSummaryOut.of(entry.activation)
        return cls(
            **summary.model_dump(),
            installation=entry.installation,
            reseller_id=entry.reseller_id,
            created_at=entry.created_at,
        )


class LedgerPage(PageOut):
    model_config = examples(
        {
            "items": [
                {
                    **ACTIVATION_SUMMARY_EXAMPLE,
                    "installation": "ACME-0001",
                    "reseller_id": None,
                    "created_at": "2026-01-10T08:30:00Z",
                }
            ],
            "has_more": False,
            "next_cursor": None,
        }
    )

    items: list[LedgerEntryOut] = Field(max_length=PAGE_ITEMS)


def _activation_json(result: ActivationResult, key_ids: Sequence[UUID | None]) -> bytes:
    renewal = result.renewal
    return orjson.dumps(
        {
            "activation_id": str(result.id),  # ids may be asyncpg's own UUID type, which orjson does not know
            "installation": result.installation,
            "activated_on": result.activated_on,
            "support_end_before": renewal.before.end,
            "support_end_after": renewal.after.end,
            "months_added": renewal.months_added,
            "licenses": len(key_ids),
            "periods": [
                {
                    "key_id": None if key_id is None else str(key_id),
                    "from": period.start,
                    "to": period.end,
                    "bonus_months": period.bonus_months,
                }
                for key_id, period in zip(key_ids, renewal.periods, strict=True)
            ],
            "certificate": result.certificate,
        }
    )
