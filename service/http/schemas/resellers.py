"""Resellers: registered, read, disabled and enabled, their secret rotated."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field

from service.http.schemas.common import PAGE_ITEMS, Line, Name, PageOut, Request, examples
from service.resellers import RotatedSecret

ClientId = Annotated[str, Field(max_length=64)]
Secret = Annotated[str, Field(max_length=128)]
EXAMPLE_RESELLER_ID = "7a1d2c3b-4e5f-4a6b-8c9d-0e1f2a3b4c5d"


class ResellerIn(Request):
    name: Line = Field(min_length=1, max_length=200, examples=["Smartec Partner LLC"])


class RotateSecretIn(Request):
    grace_seconds: int = Field(
        0,
        ge=0,
        le=30 * 24 * 3600,
        examples=[86400],
        description="How long the old secret still logs in (at most 30 days); 0: it stops at once, and so do the "
        "tokens issued before.",
    )


class ResellerCreated(BaseModel):
    model_config = examples(
        {
            "id": EXAMPLE_RESELLER_ID,
            "name": "Smartec Partner LLC",
            "client_id": "rs_3q9LkP0aZx1v2b7n",
            "client_secret": "(shown once)",
        },
        from_attributes=True,
    )

    id: UUID
    name: Name
    client_id: ClientId
    client_secret: Secret = Field(description="Shown once; only a hash of it is kept.")


_RESELLER_EXAMPLE = {
    "id": EXAMPLE_RESELLER_ID,
    "name": "Smartec Partner LLC",
    "client_id": "rs_3q9LkP0aZx1v2b7n",
    "disabled_at": None,
    "created_at": "2026-11-24T09:00:00Z",
    "previous_secret_until": None,
}


class ResellerOut(BaseModel):
    model_config = examples(_RESELLER_EXAMPLE, from_attributes=True)

    id: UUID
    name: Name
    client_id: ClientId
    disabled_at: datetime | None = Field(description="Set while disabled: its tokens are refused, it gets none.")
    created_at: datetime
    previous_secret_until: datetime | None = Field(
        description="After a rotation with a grace period: until when the secret before it still logs in."
    )


class ResellerPage(PageOut):
    model_config = examples({"items": [_RESELLER_EXAMPLE], "has_more": False, "next_cursor": None})

    items: list[ResellerOut] = Field(max_length=PAGE_ITEMS)


class ResellerSecretRotated(ResellerOut):
    model_config = examples({**_RESELLER_EXAMPLE, "client_secret": "(shown once)"})

    client_secret: Secret = Field(description="The new secret, shown once; the old one and its tokens no longer work.")

    @classmethod
    def of_rotation(cls, rotated: RotatedSecret) -> "ResellerSecretRotated":
        return cls(**ResellerOut.model_validate(rotated.reseller).model_dump(), client_secret=rotated.client_secret)
