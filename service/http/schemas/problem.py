"""The body of every error: RFC 9457 problem details."""

from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from service.http.schemas.installations import QuoteOut


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable machine-readable `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = Field(None, description="`invalid_request`: where and what, per field")
    quote: QuoteOut | None = Field(None, description="`licenses_insufficient`: what renewing takes")
    dependents: list[UUID] | None = Field(
        None, description="`void_has_dependents`: the later live activations computed on the one to void"
    )
