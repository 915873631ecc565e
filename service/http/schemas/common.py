"""What the resources' bodies share: the types a request's values are checked with, the strict `Request` base,
`Money`, and the ids the OpenAPI examples use."""

import re
from datetime import date
from typing import Annotated, Any, Unpack
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints

from service.errors import N_
from service.examples import EXAMPLE_ACTIVATION_ID as EXAMPLE_ACTIVATION_ID

EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2100, 12, 31)


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: object) -> object:
    """A date is written YYYY-MM-DD, and nothing else is one: pydantic's own parsing would take a date-time at
    midnight, or a Unix timestamp. Parsed here because FastAPI validates a body's parsed JSON as Python objects, and
    pydantic's strict mode takes no string for a date there."""
    if isinstance(value, str):
        if not _ISO_DATE.fullmatch(value):
            raise ValueError(N_("must be a date written YYYY-MM-DD"))
        return date.fromisoformat(value)
    return value


def _sane(value: date) -> date:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(N_("must be a date between 2000-01-01 and 2100-12-31"))
    return value


def _written_in_digits(value: object) -> object:
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError(N_("must be a whole number written in digits"))
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
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"  # one line: no control character at all
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"  # tabs and line breaks too
Line = Annotated[str, Field(pattern=LINE_PATTERN)]
Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
# One installation whatever the case it is typed in: folded to its stored, upper-case form here, so that every
# service function receives the canonical code. pydantic-core folds it (no Python call on the hot paths), and
# the ASCII pattern is checked on what was typed: "ı" would fold to "I", but it is refused.
INSTALLATION_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
InstallationCode = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=INSTALLATION_CODE_PATTERN, to_upper=True)
]

EXAMPLE_KEY_ID = "0b9e3a8e-7d55-4a0f-8f7c-3c5d1e2f4a6b"
EXAMPLE_CERTIFICATE = "eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiJ9.eyJzdWIiOiJBQ01FLTAwMDEiLCAiLi4uIjogIi4uLiJ9.c2ln"


class Request(BaseModel):
    # Strict: `true` or `"5"` is not a count. Subclasses' configs are merged into this one.
    model_config = ConfigDict(extra="forbid", strict=True)


def examples(*items: dict[str, Any], **config: Unpack[ConfigDict]) -> ConfigDict:
    """A model's config with its examples, for the OpenAPI document."""
    return ConfigDict(json_schema_extra={"examples": list(items)}, **config)


class Money(BaseModel):
    amount: str = Field(examples=["12000.00"])
    currency: str = Field(examples=["RUB"])

    @classmethod
    def of(cls, minor: int, currency: str) -> "Money":
        return cls(amount=f"{minor // 100}.{minor % 100:02d}", currency=currency)
