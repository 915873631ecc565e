"""The body of every error: RFC 9457 problem details."""

from uuid import UUID

from pydantic import BaseModel, Field

from service.http.schemas.installations import QuoteOut


class FieldError(BaseModel):
    """One field of an `invalid_request`: where (its path in the request) and what."""

    loc: list[str | int] = Field(examples=[["body", "count"]])
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable machine-readable `code`: the body of every error but the token
    endpoint's (RFC 6749 says how those look). Members beside the five below appear only with the codes named."""

    type: str = Field(max_length=100, description="`urn:timex-licensing:problem:` and the code")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    code: str = Field(
        max_length=64,
        pattern="^[a-z_]+$",
        description="What went wrong, stable: each operation lists the codes it answers with",
    )
    errors: list[FieldError] | None = Field(None, description="`invalid_request`: where and what, per field")
    quote: QuoteOut | None = Field(
        None, description="`licenses_insufficient`: what renewing takes today, and the licenses it needs"
    )
    key_index: int | None = Field(
        None,
        ge=0,
        le=49,
        description="`key_not_found`, `key_already_used`, `key_revoked`, `key_duplicated`, `key_malformed`: which "
        "key of the request, by its position (from 0)",
    )
    key_prefix: str | None = Field(
        None,
        max_length=16,
        description="With `key_index`, that key's display prefix (`TXS-` and 4 symbols; never the whole key), "
        "except for `key_malformed` (not a key)",
    )
    dependents: list[UUID] | None = Field(
        None, description="`void_has_dependents`: the later live activations computed on the one to void"
    )
