"""`POST /v1/auth/token`: resellers trade their client credentials for a short-lived access token."""

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request

from service import resellers
from service.auth import TokenSettings, issue_token
from service.http.deps import ClockDep, client_address, runtime_of
from service.http.openapi import problem_responses
from service.http.schemas.auth import TokenOut
from service.http.schemas.common import Line

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post(
    "/token",
    summary="Get an access token (OAuth2 client credentials)",
    responses=problem_responses(400, 401, 413, 429, 503),
)
async def token(
    request: Request,
    clock: ClockDep,
    client_id: Annotated[Line, Form(max_length=64)],
    client_secret: Annotated[Line, Form(max_length=128)],
    grant_type: Annotated[Literal["client_credentials"], Form()] = "client_credentials",
) -> TokenOut:
    """OAuth2 client credentials (form-encoded): a reseller's client id and secret buy a short-lived bearer
    token for the authenticated endpoints. An unknown client, a wrong secret and a disabled reseller are the
    same `401`. Failed attempts are limited per client address and per client id (`429`, `Retry-After`)."""
    runtime = runtime_of(request)
    settings = runtime.settings
    login = await resellers.authenticate(
        driver=runtime.driver,
        limiter=runtime.token_limiter,
        checks=runtime.secret_checks,
        client=client_address(request),
        client_id=client_id,
        client_secret=client_secret,
    )
    lifetime = timedelta(minutes=settings.access_token_minutes)
    access_token = issue_token(
        TokenSettings.of(settings), "reseller", str(login.reseller_id), login.issued_at(clock.now()), lifetime
    )
    return TokenOut(access_token=access_token, expires_in=int(lifetime.total_seconds()))
