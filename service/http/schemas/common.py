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


# The range in the document too, as a pattern (JSON Schema has no bounds for a date), so that a generated client or a
# fuzzer sends none outside it.
SANE_DATE_PATTERN = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
SaneDate = Annotated[
    date,
    BeforeValidator(_iso_date),
    AfterValidator(_sane),
    Field(json_schema_extra={"pattern": SANE_DATE_PATTERN}),
]
# A JSON string, as the strict request bodies take a UUID: strict mode would take only a UUID object, since FastAPI
# validates a body's parsed JSON as Python objects.
JsonUuid = Annotated[UUID, Strict(False)]
# For an integer in a query: pydantic's lax parsing of its text takes `1.0`, `+1`, ` 1` and `1_0`. It goes after the
# integer's bounds in `Annotated`: bounds after it are documented under pydantic's names (`ge`), not JSON Schema's.
WrittenInDigits = BeforeValidator(_written_in_digits)
# Control characters (Unicode category Cc: U+0000-U+001F and U+007F-U+009F) have no place in a name or a note, and
# PostgreSQL refuses NUL in text outright; nor do the bidirectional marks, embeddings, overrides and isolates (U+061C,
# U+200E-U+200F, U+202A-U+202E, U+2066-U+2069: they make a name read otherwise than it is, `Partner\u202egpj.exe`) and
# the line and paragraph separators (U+2028-U+2029: a line break to whatever displays or logs it). Every free-form
# string a request carries is a `Line` or a `Text`, refused at validation by pydantic-core's regex engine. Lone
# surrogates need nothing more: pydantic refuses them as strings.
# Written as escapes, which pydantic-core's, Python's and JavaScript's regexes all read: the document shows no
# invisible character.
_BIDI_AND_SEPARATORS = r"\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
LINE_PATTERN = rf"^[^\x00-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]*$"  # one line: no control character at all
TEXT_PATTERN = rf"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]*$"  # tabs and line breaks too
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


# What answers carry, bounded as the columns (or the formats) hold them: said in the document, checked as built.
INT32_MAX = 2**31 - 1
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
StoredCode = Annotated[str, Field(max_length=64)]
Name = Annotated[str, Field(max_length=200)]
Note = Annotated[str, Field(max_length=500)]
Jwt = Annotated[str, Field(max_length=4096)]
PAGE_ITEMS = 1000


class Request(BaseModel):
    # Strict: `true` or `"5"` is not a count. Subclasses' configs are merged into this one.
    model_config = ConfigDict(extra="forbid", strict=True)


def examples(*items: dict[str, Any], **config: Unpack[ConfigDict]) -> ConfigDict:
    """A model's config with its examples, for the OpenAPI document."""
    return ConfigDict(json_schema_extra={"examples": list(items)}, **config)


# A cursor as `service.pagination` writes it: base64url, unpadded.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,400}$"


class PageOut(BaseModel):
    """What every page carries beside its `items`."""

    has_more: bool = Field(description="Whether another page follows.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same filters) for the next page; null on the last. Opaque.",
        max_length=400,
    )


class Money(BaseModel):
    amount: str = Field(examples=["12000.00"], pattern=r"^[0-9]{1,17}\.[0-9]{2}$", max_length=20)
    currency: str = Field(examples=["RUB"], pattern="^[A-Z]{3}$", max_length=3)

    @classmethod
    def of(cls, minor: int, currency: str) -> "Money":
        return cls(amount=f"{minor // 100}.{minor % 100:02d}", currency=currency)
