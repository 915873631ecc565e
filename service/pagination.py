"""Every list's one way to page: at most `limit` rows in a fixed order, and an opaque cursor for the next page that
holds where this one ended (the sort columns of its last row). Clients pass it back as it is; a cursor this service
did not give is refused as bad input, never a failure."""

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from service.errors import N_, InvalidRequest

T = TypeVar("T")
U = TypeVar("U")
Value = date | datetime | int | UUID | str
Kind = type[date] | type[datetime] | type[int] | type[UUID] | type[str]

_BIGINT = 2**63  # the database's integer ids are signed 64-bit


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
    """Where the next page starts; None on the last page."""

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None

    def map(self, each: Callable[[T], U]) -> "Page[U]":
        return Page([each(item) for item in self.items], self.next_cursor)


def page_of(rows: Sequence[T], limit: int, position: Callable[[T], tuple[Value, ...]]) -> Page[T]:
    """A page from `limit + 1` rows read in the list's order: the one more says whether another page follows."""
    items = list(rows[:limit])
    return Page(items, encode(*position(items[-1])) if len(rows) > limit else None)


def encode(*position: Value) -> str:
    """A cursor: the position's values as JSON, base64url without padding (a query value needs no escaping)."""
    values = [value if isinstance(value, int) else str(value) for value in position]
    text = json.dumps(values, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str, *kinds: Kind) -> tuple[Any, ...]:
    """A cursor's position, each value of its kind: `InvalidRequest` for anything `encode` did not make."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError(values)
        return tuple(_value(value, kind) for value, kind in zip(values, kinds, strict=True))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest(N_("The cursor is not one this service gave; start again without it")) from exc


def _value(value: object, kind: Kind) -> Value:
    if kind is int:
        if type(value) is not int or not -_BIGINT <= value < _BIGINT:
            raise ValueError(value)
        return value
    if not isinstance(value, str):
        raise ValueError(value)
    if kind is datetime:
        instant = datetime.fromisoformat(value)
        if instant.tzinfo is None:
            raise ValueError(value)
        return instant
    if kind is date:
        return date.fromisoformat(value)
    if kind is UUID:
        return UUID(value)
    return value
