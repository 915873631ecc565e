"""`POST /v1/auth/token`: resellers trade their client credentials for a short-lived access token, as RFC 6749
says: the client credentials grant (§4.4), the client authenticated by HTTP Basic or by the form (§2.3.1), the
answer (§5.1) and errors (§5.2) in its own JSON, not problem+json, since OAuth2 clients read those."""

from base64 import b64decode
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import unquote_plus

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from service import resellers
from service.auth import TokenSettings, issue_token
from service.errors import RateLimited, Unauthenticated, Unavailable
from service.http.deps import client_address, runtime_of
from service.http.openapi import OAUTH2_ERRORS, REF, oauth2_errors
from service.http.problems import RETRY_AFTER_UNAVAILABLE
from service.http.schemas.auth import OAuth2ErrorCode, TokenOut, TokenRequest

router = APIRouter(prefix="/v1/auth", tags=["auth"])

FORM = "application/x-www-form-urlencoded"
# RFC 6749 §5.1: a token, and an error about one, is never cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class _Refused(Exception):
    def __init__(self, error: OAuth2ErrorCode, description: str | None = None, headers: dict[str, str] | None = None):
        self.error = error
        self.description = description or OAUTH2_ERRORS[error][1]
        self.headers = headers or {}


def _answer(body: Mapping[str, object], status: int, headers: Mapping[str, str]) -> Response:
    return Response(orjson.dumps(body), status, {**_NO_STORE, **headers}, media_type="application/json")


def _basic(request: Request) -> tuple[str, str] | None:
    """HTTP Basic's client id and secret, each form-urlencoded first (RFC 6749 §2.3.1), or None without Basic."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, colon, client_secret = b64decode(encoded.strip(), validate=True).decode().partition(":")
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 (UnicodeDecodeError): all ValueErrors
        colon = ""
    if not colon:
        raise _Refused("invalid_request", "The Basic credentials are not base64 of id:secret")
    return unquote_plus(client_id), unquote_plus(client_secret)


async def _credentials(request: Request) -> tuple[str, str]:
    """The client id and secret of a well-formed client credentials request; `_Refused` otherwise."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != FORM:
        raise _Refused("invalid_request", f"The request is a form: {FORM}")
    fields = (await request.form()).multi_items()
    given = dict(fields)
    if len(given) != len(fields):
        raise _Refused("invalid_request", "A parameter is given more than once")  # RFC 6749 §3.2
    basic = _basic(request)
    if basic is not None:
        if "client_secret" in given or given.get("client_id", basic[0]) != basic[0]:
            raise _Refused("invalid_request", "The client authenticates once: with HTTP Basic or in the form")
        given |= {"client_id": basic[0], "client_secret": basic[1]}
    try:
        form = TokenRequest.model_validate(given)
    except ValidationError:
        raise _Refused("invalid_request", "grant_type, client_id or client_secret is not valid") from None
    if form.grant_type != "client_credentials":
        raise _Refused("unsupported_grant_type")
    if form.client_id is None or form.client_secret is None:
        raise _Refused("invalid_request")
    return form.client_id, form.client_secret


@router.post(
    "/token",
    summary="Get an access token (OAuth2 client credentials)",
    operation_id="requestAccessToken",
    response_model=TokenOut,
    responses=oauth2_errors(),
    openapi_extra={
        "requestBody": {"required": True, "content": {FORM: {"schema": {"$ref": REF.format(model="TokenRequest")}}}}
    },
)
async def token(request: Request) -> Response:
    """OAuth2 client credentials (RFC 6749 §4.4): a reseller's client id and secret buy a short-lived bearer
    token for the authenticated endpoints. The client authenticates with HTTP Basic (`client_secret_basic`, what
    OAuth2 libraries do by default) or with `client_id` and `client_secret` in the form, not both. Errors are
    RFC 6749's: an unknown client, a wrong secret and a disabled reseller are the same `401 invalid_client`.
    Failed attempts are limited per client address and client id together, and at a much higher limit per client
    id and per client address (`429`, `Retry-After`); rotating the secret clears the client id's counters."""
    runtime = runtime_of(request)
    settings = runtime.settings
    now = runtime.clock.now()
    try:
        client_id, client_secret = await _credentials(request)
        try:
            login = await resellers.authenticate(
                driver=runtime.driver,
                limiter=runtime.token_limiter,
                wide_limit=settings.token_wide_failure_limit,
                checks=runtime.secret_checks,
                client=client_address(request),
                client_id=client_id,
                client_secret=client_secret,
                now=now,
            )
        except Unauthenticated as exc:
            raise _Refused("invalid_client", exc.detail, {"WWW-Authenticate": 'Basic realm="timex-licensing"'}) from exc
        except RateLimited as exc:
            raise _Refused("rate_limited", exc.detail, {"Retry-After": str(exc.retry_after)}) from exc
        except Unavailable as exc:
            raise _Refused("temporarily_unavailable", exc.detail, {"Retry-After": RETRY_AFTER_UNAVAILABLE}) from exc
    except _Refused as refusal:
        body = {"error": refusal.error, "error_description": refusal.description}
        return _answer(body, OAUTH2_ERRORS[refusal.error][0], refusal.headers)
    lifetime = timedelta(minutes=settings.access_token_minutes)
    access_token = issue_token(
        TokenSettings.of(settings), "reseller", str(login.reseller_id), login.issued_at(now), lifetime
    )
    answer = TokenOut(access_token=access_token, expires_in=int(lifetime.total_seconds()))
    return _answer(answer.model_dump(), 200, {})
