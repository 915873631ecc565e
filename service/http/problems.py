"""The one place where domain errors become HTTP: RFC 9457 problem+json with a stable `code`.

Its `title` and `detail` are in the client's language (`Accept-Language`: Russian or English, else
`DEFAULT_LANGUAGE`), named by `Content-Language`; the `code` is the same in every language. No problem ever
carries a stack trace, SQL, or the text of a key.
"""

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service import errors
from service.errors import N_
from service.http import validation
from service.http.deps import runtime_of
from service.http.schemas.installations import QuoteOut
from service.i18n import negotiate, translate

log = logging.getLogger("service.http")

MEDIA_TYPE = "application/problem+json"


RETRY_AFTER_UNAVAILABLE = "5"
RETRY_AFTER_IN_FLIGHT = "1"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    *,
    language: str,
    params: Mapping[str, object] | None = None,
    **extra: object,
) -> JSONResponse:
    """The problem in `language`: `title` and `detail` are message ids (`detail`'s placeholders filled from
    `params`), translated here and nowhere else."""
    body = {
        "type": f"urn:timex-licensing:problem:{code}",
        "title": translate(language, title),
        "status": status,
        "detail": translate(language, detail, dict(params) if params else None),
        "code": code,
        **extra,
    }
    return JSONResponse(
        body, status_code=status, media_type=MEDIA_TYPE, headers={**(headers or {}), "Content-Language": language}
    )


def language_of(request: Request) -> str:
    return negotiate(request.headers.get("accept-language"), runtime_of(request).settings.default_language)


def _headers(exc: errors.DomainError) -> dict[str, str] | None:
    if isinstance(exc, errors.Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, errors.RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, errors.Unavailable):
        return {"Retry-After": RETRY_AFTER_UNAVAILABLE}
    if isinstance(exc, errors.IdempotencyKeyInFlight):
        return {"Retry-After": RETRY_AFTER_IN_FLIGHT}
    return None


async def domain_error(request: Request, exc: errors.DomainError) -> JSONResponse:
    extra: dict[str, object] = {}
    if isinstance(exc, errors.LicensesInsufficient) and exc.quote is not None:
        currency = runtime_of(request).settings.currency
        extra["quote"] = QuoteOut.of(exc.quote, currency).model_dump(mode="json", by_alias=True)
    if isinstance(exc, errors.VoidHasDependents):
        extra["dependents"] = [str(activation_id) for activation_id in exc.dependents]
    if isinstance(exc, errors.KeyRefused) and exc.index is not None:
        extra["key_index"] = exc.index
        if exc.prefix is not None:
            extra["key_prefix"] = exc.prefix
    if isinstance(exc, errors.NoSigningKey):
        log.error("no signing key certified by the root can sign: see `timex-licensing rotate-signing-key`")
    elif isinstance(exc, errors.Unavailable):
        log.warning("database unavailable: %s", type(exc.__cause__).__name__)
    return problem(
        exc.status,
        exc.code,
        exc.title,
        exc.message,
        _headers(exc),
        language=language_of(request),
        params=exc.params,
        **extra,
    )


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Only where and what, in words: the offending input is not echoed, since it may be a key.
    language = language_of(request)
    fields = [
        {"loc": list(e["loc"]), "msg": validation.problem_of(e, language), "type": e["type"]} for e in exc.errors()
    ]
    detail = "; ".join(validation.describe(e, language) for e in exc.errors())
    return problem(
        400,
        errors.InvalidRequest.code,
        errors.InvalidRequest.title,
        _VERBATIM,
        language=language,
        params={"text": detail},
        errors=fields,
    )


# What Starlette and FastAPI refuse before validation: an unknown path or method, a body over `MAX_BODY_BYTES`, and
# (400) a body that is not UTF-8 or nests too deep for the JSON parser, or a malformed form. Each is a client's mistake.
_HTTP_CODES = {400: errors.InvalidRequest.code, 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
# Their titles, and their details where the framework's own (English, and not ours to translate) would be shown.
_HTTP_TITLES = {
    errors.InvalidRequest.code: errors.InvalidRequest.title,
    "not_found": N_("Not Found"),
    "method_not_allowed": N_("Method Not Allowed"),
    "payload_too_large": N_("The request body is too large"),
}
_HTTP_DETAILS = {
    errors.InvalidRequest.code: N_("The request could not be read: its body is not well-formed"),
    "not_found": N_("There is nothing at this address"),
    "method_not_allowed": N_("This address does not take this method"),
}
PAYLOAD_TOO_LARGE = N_("The request body is limited to %(bytes)d bytes")
REPEATED_PARAMETER = N_("A query parameter is given more than once")
_VERBATIM = "%(text)s"  # a detail made of messages already translated


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, errors.InvalidRequest.code)
    if code == "payload_too_large":
        detail, params = PAYLOAD_TOO_LARGE, {"bytes": runtime_of(request).settings.max_body_bytes}
    else:
        detail, params = _HTTP_DETAILS.get(code, errors.InvalidRequest.title), None
    return problem(
        exc.status_code, code, _HTTP_TITLES[code], detail, exc.headers, language=language_of(request), params=params
    )


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        500,
        "internal_error",
        N_("Internal error"),
        N_("The service failed; nothing was written."),
        language=language_of(request),
    )


def install(app: FastAPI) -> None:
    # Starlette types a handler as taking any Exception; each of these is registered for its own class.
    app.add_exception_handler(errors.DomainError, domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_error)
