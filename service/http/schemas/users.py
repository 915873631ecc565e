"""Cabinet users, for admins: invited (with a one-time setup link), listed, disabled and enabled; and the audit
log."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from service.audit import Entry
from service.http.schemas.common import PAGE_ITEMS, JsonUuid, PageOut, Request, examples
from service.http.schemas.resellers import EXAMPLE_RESELLER_ID
from service.users import UserRecord

EXAMPLE_USER_ID = "3c1b0e7a-9d2f-4e8b-a6c5-1f0d2e3b4a59"


class UserIn(Request):
    model_config = examples({"username": "anna", "role": "reseller", "reseller_id": EXAMPLE_RESELLER_ID})

    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
    role: Literal["admin", "reseller"]
    reseller_id: JsonUuid | None = Field(None, description="The reseller a `reseller` user acts for; none for admins")


class UserOut(BaseModel):
    id: UUID
    username: str = Field(max_length=64)
    role: Literal["admin", "reseller"]
    reseller_id: UUID | None
    created_at: datetime
    disabled_at: datetime | None
    password_set: bool = Field(description="Whether the user has followed its setup link")
    totp_enabled: bool = Field(description="Whether the user signs in with a one-time code too (RFC 6238)")

    @classmethod
    def of(cls, user: UserRecord) -> "UserOut":
        return cls(
            id=user.id,
            username=user.username,
            role=user.role,
            reseller_id=user.reseller_id,
            created_at=user.created_at,
            disabled_at=user.disabled_at,
            password_set=user.password_set,
            totp_enabled=user.totp_enabled,
        )


class UserInvited(UserOut):
    model_config = examples(
        {
            "id": EXAMPLE_USER_ID,
            "username": "anna",
            "role": "reseller",
            "reseller_id": EXAMPLE_RESELLER_ID,
            "created_at": "2026-11-24T09:30:00Z",
            "disabled_at": None,
            "password_set": False,
            "totp_enabled": False,
            "setup_url": "https://licensing.example.com/cabinet/setup/(shown once)",
            "setup_expires_at": "2026-11-27T09:30:00Z",
        }
    )

    setup_url: str = Field(
        max_length=2000, description="Where the user sets its password: in this answer only, good once"
    )
    setup_expires_at: datetime


class UserPage(PageOut):
    items: list[UserOut] = Field(max_length=PAGE_ITEMS)


BIGINT_MAX = 2**63 - 1


class AuditEventOut(BaseModel):
    id: int = Field(ge=1, le=BIGINT_MAX)
    occurred_at: datetime
    actor: str = Field(max_length=100, description="The username, or `token:<subject>` for an API token's admin")
    user_id: UUID | None
    reseller_id: UUID | None = Field(description="Whose business the action was")
    action: str = Field(max_length=64, examples=["keys.issued"])
    target: str | None = Field(max_length=200)
    details: dict[str, Any] | None
    address: str = Field(max_length=64, description="The client's address")

    @classmethod
    def of(cls, entry: Entry) -> "AuditEventOut":
        return cls(
            id=entry.id,
            occurred_at=entry.occurred_at,
            actor=entry.actor,
            user_id=entry.user_id,
            reseller_id=entry.reseller_id,
            action=entry.action,
            target=entry.target,
            details=entry.details,
            address=entry.address,
        )


class AuditEventPage(PageOut):
    items: list[AuditEventOut] = Field(max_length=PAGE_ITEMS)
    next_before: int | None = Field(
        ge=1,
        le=BIGINT_MAX,
        deprecated=True,
        description="Deprecated (use `next_cursor`): the `before` of the next (older) page; null on the last",
    )
