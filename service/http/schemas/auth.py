"""`POST /v1/auth/token`: its form (RFC 6749 §4.4.2), its answer (§5.1) and its errors (§5.2)."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.http.schemas.common import INT32_MAX, Jwt, Line, examples


class TokenRequest(BaseModel):
    """The form (`application/x-www-form-urlencoded`). The client authenticates once: with HTTP Basic (its id and
    secret, each form-urlencoded, RFC 6749 §2.3.1), or with `client_id` and `client_secret` here."""

    # RFC 6749 §3.2: parameters a server does not know are ignored (a client may send `scope`).
    model_config = ConfigDict(extra="ignore", strict=True)

    # Any other is answered `unsupported_grant_type` (RFC 6749 §5.2), so the enum is said, not checked here.
    grant_type: Line = Field(
        examples=["client_credentials"],
        description="`client_credentials`, the one grant",
        json_schema_extra={"const": "client_credentials"},
    )
    client_id: Annotated[Line, Field(max_length=64)] | None = Field(None, description="Unless given by HTTP Basic")
    client_secret: Annotated[Line, Field(max_length=128)] | None = Field(None, description="Unless given by HTTP Basic")


class TokenOut(BaseModel):
    model_config = examples(
        {
            "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIuLi4ifQ.c2ln",
            "token_type": "bearer",
            "expires_in": 900,
        }
    )

    access_token: Jwt
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(ge=1, le=INT32_MAX, description="Seconds")


OAuth2ErrorCode = Literal[
    "invalid_request", "invalid_client", "unsupported_grant_type", "rate_limited", "temporarily_unavailable"
]


class OAuth2Error(BaseModel):
    """The token endpoint's error (RFC 6749 §5.2), with two codes of its own: `rate_limited` (`429`, too many
    failed logins: `Retry-After`) and `temporarily_unavailable` (`503`, try again shortly: `Retry-After`)."""

    error: OAuth2ErrorCode
    error_description: str
