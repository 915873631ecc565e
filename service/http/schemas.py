"""The v1 wire format: request bodies (strict: unknown fields refused) and response bodies."""

import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

from service import rules
from service.activations import ActivationResult
from service.installations import ActivationSummary, InstallationRecord, SupportState
from service.resellers import ResellerRecord, RotatedSecret

EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2100, 12, 31)


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: object) -> object:
    """A date is written YYYY-MM-DD, and nothing else is one: pydantic's own parsing would take a date-time at
    midnight, or a Unix timestamp. Parsed here because FastAPI validates a body's parsed JSON as Python objects, and
    pydantic's strict mode takes no string for a date there."""
    if isinstance(value, str):
        if not _ISO_DATE.fullmatch(value):
            raise ValueError("must be a date written YYYY-MM-DD")
        return date.fromisoformat(value)
    return value


def _sane(value: date) -> date:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(f"must be between {EARLIEST_DATE} and {LATEST_DATE}")
    return value


def _written_in_digits(value: object) -> object:
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written in digits")
    return value


SaneDate = Annotated[date, BeforeValidator(_iso_date), AfterValidator(_sane)]
# A JSON string, as the strict request bodies take a UUID: strict mode would take only a UUID object, since FastAPI
# validates a body's parsed JSON as Python objects.
JsonUuid = Annotated[UUID, Strict(False)]
# For an integer in a query: pydantic's lax parsing of its text takes `1.0`, `+1`, ` 1` and `1_0`. It goes after the
# integer's bounds in `Annotated`: bounds after it are documented under pydantic's names (`ge`), not JSON Schema's.
WrittenInDigits = BeforeValidator(_written_in_digits)
# Control characters (Unicode category Cc: U+0000-U+001F and U+007F-U+009F) have no place in a name or a note, and
# PostgreSQL refuses NUL in text outright: every free-form string a request carries is a `Line` or a `Text`, refused at
# validation by pydantic-core's regex engine. Lone surrogates need nothing more: pydantic refuses them as strings.
Line = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")]  # one line: no control character at all
Text = Annotated[str, Field(pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]  # tabs and line breaks too
# One installation whatever the case it is typed in: folded to its stored, upper-case form here, so that every
# service function receives the canonical code. pydantic-core folds it (no Python call on the hot paths), and
# the ASCII pattern is checked on what was typed: "ı" would fold to "I", but it is refused.
InstallationCode = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", to_upper=True)
]
KeyStatus = Literal["issued", "used", "revoked"]

EXAMPLE_ACTIVATION_ID = "5f0c6a57-2f4b-4c1e-9a51-0d3c2b1a9e88"
EXAMPLE_KEY_ID = "0b9e3a8e-7d55-4a0f-8f7c-3c5d1e2f4a6b"
EXAMPLE_RESELLER_ID = "7a1d2c3b-4e5f-4a6b-8c9d-0e1f2a3b4c5d"
EXAMPLE_CERTIFICATE = "eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiJ9.eyJzdWIiOiJBQ01FLTAwMDEiLCAiLi4uIjogIi4uLiJ9.c2ln"


class Request(BaseModel):
    # Strict: `true` or `"5"` is not a count. Subclasses' configs are merged into this one.
    model_config = ConfigDict(extra="forbid", strict=True)


def examples(*items: dict[str, Any]) -> ConfigDict:
    """A response model's examples, for the OpenAPI document."""
    return ConfigDict(json_schema_extra={"examples": list(items)})


def request_examples(*items: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(items)})


class Money(BaseModel):
    amount: str = Field(examples=["12000.00"])
    currency: str = Field(examples=["RUB"])

    @classmethod
    def of(cls, minor: int, currency: str) -> "Money":
        return cls(amount=f"{minor // 100}.{minor % 100:02d}", currency=currency)


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable machine-readable `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = Field(None, description="`invalid_request`: where and what, per field")
    quote: "QuoteOut | None" = Field(None, description="`licenses_insufficient`: what renewing takes")


# --- auth and resellers


class TokenOut(BaseModel):
    model_config = examples(
        {
            "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIuLi4ifQ.c2ln",
            "token_type": "bearer",
            "expires_in": 900,
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class ResellerIn(Request):
    name: Line = Field(min_length=1, max_length=200, examples=["Smartec Partner LLC"])


class ResellerCreated(BaseModel):
    model_config = examples(
        {
            "id": EXAMPLE_RESELLER_ID,
            "name": "Smartec Partner LLC",
            "client_id": "rs_3q9LkP0aZx1v2b7n",
            "client_secret": "(shown once)",
        }
    )

    id: UUID
    name: str
    client_id: str
    client_secret: str = Field(description="Shown once; only a hash of it is kept.")


class ResellerOut(BaseModel):
    model_config = examples(
        {
            "id": EXAMPLE_RESELLER_ID,
            "name": "Smartec Partner LLC",
            "client_id": "rs_3q9LkP0aZx1v2b7n",
            "disabled_at": None,
            "created_at": "2026-11-24T09:00:00Z",
        }
    )

    id: UUID
    name: str
    client_id: str
    disabled_at: datetime | None = Field(description="Set while disabled: its tokens are refused, it gets none.")
    created_at: datetime

    @classmethod
    def of(cls, r: ResellerRecord) -> "ResellerOut":
        return cls(id=r.id, name=r.name, client_id=r.client_id, disabled_at=r.disabled_at, created_at=r.created_at)


class ResellerSecretRotated(ResellerOut):
    model_config = examples(
        {
            "id": EXAMPLE_RESELLER_ID,
            "name": "Smartec Partner LLC",
            "client_id": "rs_3q9LkP0aZx1v2b7n",
            "disabled_at": None,
            "created_at": "2026-11-24T09:00:00Z",
            "client_secret": "(shown once)",
        }
    )

    client_secret: str = Field(description="The new secret, shown once; the old one and its tokens no longer work.")

    @classmethod
    def of_rotation(cls, rotated: RotatedSecret) -> "ResellerSecretRotated":
        return cls(**ResellerOut.of(rotated.reseller).model_dump(), client_secret=rotated.client_secret)


# --- installations


class InstallationIn(Request):
    model_config = request_examples(
        {"code": "ACME-0001", "purchased_on": "2025-03-15"},
        {"code": "ACME-0002", "support_end": "2026-12-31"},
    )

    code: InstallationCode = Field(examples=["ACME-0001"])
    purchased_on: SaneDate | None = Field(
        None,
        description="A new sale: the purchase date ([R3](/docs/rules#r3)). "
        "A reseller's is at most `PURCHASE_MAX_AGE_DAYS` (default 30) days old.",
    )
    support_end: SaneDate | None = Field(
        None, description="Admins only: an existing customer's known support end ([R2](/docs/rules#r2))."
    )
    reseller_id: JsonUuid | None = Field(None, description="Admins only: the reseller that sold it.")

    @model_validator(mode="after")
    def _one_origin(self) -> "InstallationIn":
        if (self.purchased_on is None) == (self.support_end is None):
            raise ValueError("give exactly one of purchased_on and support_end")
        return self


class ActivationSummaryOut(BaseModel):
    activation_id: UUID
    activated_on: date
    licenses: int
    support_end_before: date
    support_end_after: date
    months_added: int
    bonus_months: int
    key_ids: list[UUID]
    voided_at: datetime | None = Field(description="Set when an admin voided it; its figures are history.")
    void_reason: str | None

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
            "activations": [
                {
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
            ],
        }
    )

    code: str
    reseller_id: UUID | None
    anchor: date
    support_end: date
    months_granted: int
    bonus_months: int
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

    code: str
    support_end: date
    active: bool
    as_of: date
    days_left: int
    months_granted: int
    bonus_months: int
    entitlements: Entitlements
    certificate: str = Field(description="ES256 JWT stating the support end; verify with /.well-known/jwks.json")

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
    bonus_months: int

    @classmethod
    def of(cls, p: rules.LicensePeriod) -> "PeriodOut":
        return cls(from_=p.start, to=p.end, bonus_months=p.bonus_months)


class QuoteOut(BaseModel):
    model_config = examples(
        {
            "support_end": "2026-03-15",
            "on": "2027-03-16",
            "active": False,
            "licenses_required": 2,
            "missed_years": 1,
            "licenses": 2,
            "sufficient": True,
            "unit_price": {"amount": "12000.00", "currency": "RUB"},
            "total": {"amount": "24000.00", "currency": "RUB"},
            "support_end_after": "2028-03-15",
            "periods": [
                {"from": "2026-03-16", "to": "2027-03-15", "bonus_months": 0},
                {"from": "2027-03-16", "to": "2028-03-15", "bonus_months": 0},
            ],
        }
    )

    support_end: date
    on: date
    active: bool
    licenses_required: int
    missed_years: int
    licenses: int
    sufficient: bool
    unit_price: Money
    total: Money
    support_end_after: date
    periods: list[PeriodOut]

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


# --- keys


class KeysIn(Request):
    count: int = Field(ge=1, le=100_000, examples=[10])
    reseller_id: JsonUuid | None = None


class IssuedKeyOut(BaseModel):
    key_id: UUID
    key: str = Field(description="The key itself: shown once, never stored.")
    prefix: str


class KeysIssued(BaseModel):
    model_config = examples(
        {
            "reseller_id": None,
            "keys": [{"key_id": EXAMPLE_KEY_ID, "key": "TXS-…(shown once)", "prefix": "TXS-7QKD"}],
        }
    )

    reseller_id: UUID | None
    keys: list[IssuedKeyOut]


class KeyOut(BaseModel):
    key_id: UUID
    prefix: str
    status: KeyStatus
    reseller_id: UUID | None
    activation_id: UUID | None
    created_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


class KeyPage(BaseModel):
    model_config = examples(
        {
            "items": [
                {
                    "key_id": EXAMPLE_KEY_ID,
                    "prefix": "TXS-7QKD",
                    "status": "used",
                    "reseller_id": None,
                    "activation_id": EXAMPLE_ACTIVATION_ID,
                    "created_at": "2026-01-09T10:00:00Z",
                    "used_at": "2026-01-10T08:30:00Z",
                    "revoked_at": None,
                }
            ],
            "next_after": None,
        }
    )

    items: list[KeyOut]
    next_after: UUID | None = Field(description="Pass as `after` for the next page; null on the last.")


# --- activations


class ActivationIn(Request):
    model_config = request_examples(
        {"installation": "ACME-0001", "keys": ["TXS-…(the key as printed)"]},
    )

    installation: InstallationCode
    keys: list[Annotated[Text, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=50)


class VoidIn(Request):
    reason: Text = Field(min_length=1, max_length=500, examples=["Refund, order 1234"])


class VoidOut(BaseModel):
    model_config = examples(
        {
            "activation_id": EXAMPLE_ACTIVATION_ID,
            "installation": "ACME-0001",
            "voided_at": "2026-02-01T12:00:00Z",
            "reason": "Refund, order 1234",
            "support_end": "2026-03-15",
        }
    )

    activation_id: UUID
    installation: str
    voided_at: datetime
    reason: str
    support_end: date = Field(description="The installation's support end after the activation was voided.")


class LicenseOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    key_id: UUID
    from_: date = Field(alias="from")
    to: date
    bonus_months: int


class ActivationOut(BaseModel):
    model_config = examples(
        {
            "activation_id": EXAMPLE_ACTIVATION_ID,
            "installation": "ACME-0001",
            "activated_on": "2026-01-10",
            "support_end_before": "2026-03-15",
            "support_end_after": "2027-05-15",
            "months_added": 14,
            "licenses": [{"key_id": EXAMPLE_KEY_ID, "from": "2026-03-16", "to": "2027-05-15", "bonus_months": 2}],
            "certificate": EXAMPLE_CERTIFICATE,
        }
    )

    activation_id: UUID
    installation: str
    activated_on: date
    support_end_before: date
    support_end_after: date
    months_added: int
    licenses: list[LicenseOut]
    certificate: str = Field(description="ES256 JWT stating the new support end; verify with /.well-known/jwks.json")

    @staticmethod
    def json_of(result: ActivationResult) -> bytes:
        """This document as JSON, written straight from the activation's values, as `SupportOut.json_of`; and as
        that one, checked against this model by tests/test_api_hand_serialized.py (201 and replayed 200, one
        key and several, current and back-dated)."""
        renewal = result.renewal
        return orjson.dumps(
            {
                "activation_id": str(result.id),  # ids may be asyncpg's own UUID type, which orjson does not know
                "installation": result.installation,
                "activated_on": result.activated_on,
                "support_end_before": renewal.before.end,
                "support_end_after": renewal.after.end,
                "months_added": renewal.months_added,
                "licenses": [
                    {"key_id": str(key_id), "from": period.start, "to": period.end, "bonus_months": period.bonus_months}
                    for key_id, period in zip(result.key_ids, renewal.periods, strict=True)
                ],
                "certificate": result.certificate,
            }
        )
