"""Keys: issued (shown once), listed as metadata, revoked."""

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from service.http.schemas.common import (
    EXAMPLE_ACTIVATION_ID,
    EXAMPLE_KEY_ID,
    PAGE_ITEMS,
    JsonUuid,
    PageOut,
    Request,
    examples,
)
from service.keys import KeyInfo

KeyStatus = Literal["issued", "used", "revoked"]


class KeysIn(Request):
    count: int = Field(ge=1, le=100_000, examples=[10], description="Written as an integer: `10.0` is refused.")
    reseller_id: JsonUuid | None = None


class IssuedKeyOut(BaseModel):
    key_id: UUID
    key: str = Field(max_length=64, description="The key itself: shown once, never stored.")
    prefix: str = Field(max_length=16)


class KeysIssued(BaseModel):
    model_config = examples(
        {
            "reseller_id": None,
            "keys": [{"key_id": EXAMPLE_KEY_ID, "key": "TXS-…(shown once)", "prefix": "TXS-7QKD"}],
        }
    )

    reseller_id: UUID | None
    keys: list[IssuedKeyOut] = Field(max_length=100_000)


class KeyOut(BaseModel):
    key_id: UUID
    prefix: str = Field(max_length=16)
    status: KeyStatus
    reseller_id: UUID | None
    activation_id: UUID | None
    created_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: KeyInfo) -> "KeyOut":
        return cls(
            key_id=info.id,
            prefix=info.prefix,
            status=info.status,
            reseller_id=info.reseller_id,
            activation_id=info.activation_id,
            created_at=info.created_at,
            used_at=info.used_at,
            revoked_at=info.revoked_at,
        )


class KeyPage(PageOut):
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
            "next_cursor": None,
            "next_after": None,
            "has_more": False,
        }
    )

    items: list[KeyOut] = Field(max_length=PAGE_ITEMS)
    next_after: UUID | None = Field(
        deprecated=True, description="Deprecated since 0.2 (use `next_cursor`): the last key's id on a full page."
    )
