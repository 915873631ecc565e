"""Installations: registered, read with their activations, their public support state and renewal quotes."""

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from service import rules
from service.examples import QUOTE_EXAMPLE
from service.http.schemas.common import (
    EXAMPLE_ACTIVATION_ID,
    EXAMPLE_CERTIFICATE,
    EXAMPLE_KEY_ID,
    PAGE_ITEMS,
    Count,
    InstallationCode,
    JsonUuid,
    Jwt,
    Money,
    Note,
    PageOut,
    Request,
    SaneDate,
    StoredCode,
    examples,
)
from service.installations import ActivationSummary, InstallationRecord, PipelineRow, SupportState


class _Registration(Request):
    code: InstallationCode = Field(examples=["ACME-0001"])
    reseller_id: JsonUuid | None = Field(None, description="Admins only: the reseller that sold it.")


class NewSale(_Registration):
    """A new sale: a year of support from its purchase date."""

    model_config = examples({"code": "ACME-0001", "purchased_on": "2025-03-15"})

    purchased_on: SaneDate = Field(
        description="The purchase date ([R3](/docs/rules#r3)). "
        "A reseller's is at most `PURCHASE_MAX_AGE_DAYS` (default 30) days old."
    )


class ExistingCustomer(_Registration):
    """Admins only: a customer moved from another system, with its known support end."""

    model_config = examples({"code": "ACME-0002", "support_end": "2026-12-31"})

    support_end: SaneDate = Field(description="Its known support end ([R2](/docs/rules#r2)).")


def _origin(body: Any) -> str:
    """Which of the two a registration is: a body that gives both is a sale with a field too many, one that gives
    neither an existing customer without its support end; both are refused by the model chosen."""
    return "sale" if isinstance(body, dict) and "purchased_on" in body else "existing"


# Exactly one of the two origins: `oneOf` in the document, so that a generated client types the body as one or
# the other.
InstallationIn = Annotated[
    Annotated[NewSale, Tag("sale")] | Annotated[ExistingCustomer, Tag("existing")], Discriminator(_origin)
]


class ActivationSummaryOut(BaseModel):
    activation_id: UUID
    activated_on: date
    licenses: int = Field(ge=1, le=50)
    support_end_before: date
    support_end_after: date
    months_added: Count
    bonus_months: Count
    key_ids: list[UUID | None] = Field(
        max_length=50,
        description="The keys it used, in the order applied; for a reseller, null for a key another reseller sold.",
    )
    voided_at: datetime | None = Field(description="Set when an admin voided it; its figures are history.")
    void_reason: Note | None

    @classmethod
    def of(cls, a: ActivationSummary) -> "ActivationSummaryOut":
        return cls(
            activation_id=a.id,
            activated_on=a.activated_on,
            licenses=a.licenses,
            support_end_before=a.support_end_before,
            support_end_after=a.support_end_after,
            months_added=a.months_added,
            bonus_months=a.bonus_months,
            key_ids=list(a.key_ids),
            voided_at=a.voided_at,
            void_reason=a.void_reason,
        )


ACTIVATION_SUMMARY_EXAMPLE = {
    "activation_id": EXAMPLE_ACTIVATION_ID,
    "activated_on": "2026-01-10",
    "licenses": 1,
    "support_end_before": "2026-03-15",
    "support_end_after": "2027-05-15",
    "months_added": 14,
    "bonus_months": 2,
    "key_ids": [EXAMPLE_KEY_ID],
    "voided_at": None,
    "void_reason": None,
}


class InstallationOut(BaseModel):
    model_config = examples(
        {
            "code": "ACME-0001",
            "reseller_id": None,
            "anchor": "2025-03-15",
            "support_end": "2027-05-15",
            "months_granted": 26,
            "bonus_months": 2,
            "created_at": "2025-03-15T09:00:00Z",
            "activations": [ACTIVATION_SUMMARY_EXAMPLE],
        }
    )

    code: StoredCode
    reseller_id: UUID | None
    anchor: date
    support_end: date
    months_granted: Count
    bonus_months: Count
    created_at: datetime | None
    activations: list[ActivationSummaryOut] = []

    @classmethod
    def of(cls, i: InstallationRecord, activations: Sequence[ActivationSummary] = ()) -> "InstallationOut":
        return cls(
            code=i.code,
            reseller_id=i.reseller_id,
            anchor=i.support.anchor,
            support_end=i.support.end,
            months_granted=i.support.months,
            bonus_months=i.bonus_months,
            created_at=i.created_at,
            activations=[ActivationSummaryOut.of(a) for a in activations],
        )


class Entitlements(BaseModel):
    support_requests: bool
    updates_released_through: date


class SupportOut(BaseModel):
    model_config = examples(
        {
            "code": "ACME-0001",
            "support_end": "2027-05-15",
            "active": True,
            "as_of": "2026-11-24",
            "days_left": 172,
            "months_granted": 26,
            "bonus_months": 2,
            "entitlements": {"support_requests": True, "updates_released_through": "2027-05-15"},
            "certificate": EXAMPLE_CERTIFICATE,
        }
    )

    code: StoredCode
    support_end: date
    active: bool
    as_of: date
    days_left: Count
    months_granted: Count
    bonus_months: Count
    entitlements: Entitlements
    certificate: Jwt = Field(
        description="ES256 JWT stating the support end; verify it with the pinned root (through its `x5c` header) "
        "or with /.well-known/jwks.json"
    )

    @staticmethod
    def json_of(s: SupportState, certificate: str) -> bytes:
        """This document as JSON, written straight from the rules' values: the hottest answer does not
        build and validate a model of values that are already of their types (3 % of a read). Nothing
        here checks it against this model: tests/test_api_hand_serialized.py does, for each shape of
        the answer (active, lapsed, renewed), refusing any field the model does not declare."""
        end = s.support.end
        return orjson.dumps(
            {
                "code": s.code,
                "support_end": end,
                "active": s.active,
                "as_of": s.as_of,
                "days_left": s.days_left,
                "months_granted": s.support.months,
                "bonus_months": s.bonus_months,
                "entitlements": {
                    "support_requests": rules.may_open_support_requests(s.support, s.as_of),
                    "updates_released_through": end,
                },
                "certificate": certificate,
            }
        )


class PeriodOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    bonus_months: Count

    @classmethod
    def of(cls, p: rules.LicensePeriod) -> "PeriodOut":
        return cls(from_=p.start, to=p.end, bonus_months=p.bonus_months)


class QuoteOut(BaseModel):
    model_config = examples(QUOTE_EXAMPLE)

    support_end: date
    on: date
    active: bool
    licenses_required: Count
    missed_years: Count
    licenses: Count
    sufficient: bool
    unit_price: Money
    total: Money
    support_end_after: date
    periods: list[PeriodOut] = Field(max_length=1000, description="One per license quoted (at most 1,000)")

    @classmethod
    def of(cls, q: rules.Quote, currency: str) -> "QuoteOut":
        return cls(
            support_end=q.support_end,
            on=q.on,
            active=q.active,
            licenses_required=q.licenses_required,
            missed_years=q.missed_years,
            licenses=q.licenses,
            sufficient=q.sufficient,
            unit_price=Money.of(q.unit_price_minor, currency),
            total=Money.of(q.total_minor, currency),
            support_end_after=q.support_end_after,
            periods=[PeriodOut.of(p) for p in q.periods],
        )


PipelineState = Literal["active", "expiring", "lapsed"]


class PipelineItemOut(BaseModel):
    code: StoredCode
    reseller_id: UUID | None
    support_end: date
    days_left: Count = Field(description="Days of support left after today; 0 once lapsed.")
    state: PipelineState = Field(
        description="`lapsed` once support has ended, `expiring` while it ends within `expiring_within_days` "
        "(renewing now still earns the bonus, [R5](/docs/rules#r5)), else `active`."
    )
    licenses_required: Count = Field(description="What renewing today takes ([R7](/docs/rules#r7)).")
    renewal_total: Money = Field(description="What renewing today costs ([R8](/docs/rules#r8)).")

    @classmethod
    def of(cls, row: PipelineRow, currency: str) -> "PipelineItemOut":
        return cls(
            code=row.code,
            reseller_id=row.reseller_id,
            support_end=row.support.support.end,
            days_left=row.support.days_left,
            state=row.state,
            licenses_required=row.quote.licenses_required,
            renewal_total=Money.of(row.quote.total_minor, currency),
        )


class InstallationPage(PageOut):
    model_config = examples(
        {
            "items": [
                {
                    "code": "ACME-0001",
                    "reseller_id": None,
                    "support_end": "2027-01-10",
                    "days_left": 47,
                    "state": "expiring",
                    "licenses_required": 1,
                    "renewal_total": {"amount": "12000.00", "currency": "RUB"},
                }
            ],
            "next_cursor": "WyIyMDI3LTAxLTEwIiwxMl0",
            "has_more": True,
        }
    )

    items: list[PipelineItemOut] = Field(max_length=PAGE_ITEMS)
