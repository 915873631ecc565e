"""The OpenAPI document: each operation lists exactly the problems it can answer with, one shared `Problem`
schema, and the headers that come with them."""

import json
from typing import Any

from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service import errors
from service.http import validation
from service.http.pagination import CURSOR
from service.http.problems import MEDIA_TYPE
from service.http.schemas.auth import OAuth2Error, TokenRequest
from service.http.schemas.common import INSTALLATION_CODE_PATTERN
from service.http.schemas.problem import Problem
from service.i18n import SOURCE_LANGUAGE

REF = "#/components/schemas/{model}"
PROBLEM = {"$ref": REF.format(model="Problem")}
BAD_CODE = {"pattern": INSTALLATION_CODE_PATTERN}

# What the middleware and the framework refuse before any route runs, beside the domain's own codes.
PAYLOAD_TOO_LARGE = "payload_too_large"
# What any operation answers when it fails (`problems.unexpected_error`).
INTERNAL_ERROR = "internal_error"


def _coded(error: type[errors.DomainError]) -> list[type[errors.DomainError]]:
    """Every class below `error` that names a code (a subclass sharing its parent's code is the parent's)."""
    below = [coded for subclass in error.__subclasses__() for coded in _coded(subclass)]
    return [error, *below] if "code" in vars(error) else below


_CODED = _coded(errors.DomainError)
STATUS = {**{error.code: error.status for error in _CODED}, PAYLOAD_TOO_LARGE: 413, INTERNAL_ERROR: 500}
_TITLES = {
    **{error.code: error.title for error in _CODED},
    PAYLOAD_TOO_LARGE: "The request body is too large",
    INTERNAL_ERROR: "Internal error",
}
# Each code's example: what the service really answers, its `detail` and any member beside the five of every problem.
_EXAMPLES = {
    **{error.code: error.example for error in _CODED},
    PAYLOAD_TOO_LARGE: errors.Example("The request body is limited to 65536 bytes"),
    INTERNAL_ERROR: errors.Example("The service failed; nothing was written."),
}

# Responses' headers, each described once in `components/headers`.
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's `X-Request-ID` (1–64 of `A-Za-z0-9._:-`) when it gave one, else one made "
        "for it; every log line of the request carries it.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$", "maxLength": 64},
    },
    "Retry-After": {
        "description": "Seconds to wait before sending the same request again.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    },
    "Cache-Control": {
        "description": "How long the answer may be kept (`max-age`, seconds).",
        "schema": {"type": "string", "maxLength": 100, "examples": ["public, max-age=60"]},
    },
    "WWW-Authenticate": {
        "description": "The scheme to authenticate with: `Bearer` (an access token), `Basic` at the token endpoint.",
        "schema": {"type": "string", "maxLength": 100},
    },
}
HEADERS["Link"] = {
    "description": 'On a page that has another after it: `<…>; rel="next"` (RFC 8288), the next page\'s address '
    "(this request's, with `cursor` set to `next_cursor`), relative to this request's.",
    "schema": {
        "type": "string",
        "maxLength": 2000,
        "examples": ['</v1/keys?limit=100&cursor=WyIwYjllIl0>; rel="next"'],
    },
}
HEADERS["RateLimit-Policy"] = {
    "description": "On an operation that is limited, once the request reached the limit: its policy, as the IETF "
    'httpapi draft writes it (a structured field): `"activation";q=10;w=900`, at most `q` failures in `w` seconds '
    "per client (see the README: only failures count, and attempts in flight).",
    "schema": {"type": "string", "maxLength": 100, "pattern": '^"[a-z]+";q=[0-9]+;w=[0-9]+$'},
}
HEADERS["RateLimit"] = {
    "description": "With `RateLimit-Policy`: where this client stands, `r` more attempts that may fail (this one "
    'counted as if it failed) and `t` seconds until the failures counted are forgotten: `"activation";r=9;t=900`. '
    "On a `429`, `r=0` and `t` is `Retry-After`.",
    "schema": {"type": "string", "maxLength": 100, "pattern": '^"[a-z]+";r=[0-9]+;t=[0-9]+$'},
}
_LIMIT_HEADERS = ("RateLimit-Policy", "RateLimit")
HEADERS["Access-Control-Allow-Origin"] = {
    "description": "CORS: the request's `Origin` when it is one of `CORS_ALLOWED_ORIGINS` (none by default), or `*` "
    "when that is. Credentials are never allowed: the API takes bearer tokens, not cookies.",
    "schema": {"type": "string", "maxLength": 2000, "examples": ["https://backoffice.partner.example"]},
}
_HEADERS_OF_STATUS = {401: ["WWW-Authenticate"], 429: ["Retry-After"], 503: ["Retry-After"]}

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
HEADERS[REPLAYED] = {
    "description": "`true` on an answer given again: the first answer to this `Idempotency-Key`, byte for byte.",
    "schema": {"type": "string", "enum": ["true"]},
}


def _header(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def headers(*names: str) -> dict[str, dict[str, str]]:
    """A successful response's documented headers, each described once in `HEADERS`."""
    return {name: _header(name) for name in names}


Invalid = tuple[list[str | int], str, dict[str, Any]]
"""An `invalid_request` example's one field: where (`loc`), pydantic's error type and its context, described in
English as the service describes it (`validation`)."""


def _example(code: str, invalid: Invalid | None = None) -> dict[str, Any]:
    detail, extra = _EXAMPLES[code].detail, dict(_EXAMPLES[code].members)
    if invalid is not None and code == errors.InvalidRequest.code:
        loc, kind, context = invalid
        error = {"loc": loc, "type": kind, "ctx": context}
        msg = validation.problem_of(error, SOURCE_LANGUAGE)
        detail = validation.describe(error, SOURCE_LANGUAGE)
        extra = {"errors": [{"loc": loc, "msg": msg, "type": kind}]}
    status = STATUS[code]
    return {
        "type": f"urn:timex-licensing:problem:{code}",
        "title": _TITLES[code],
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


def problems(*codes: str, invalid: Invalid | None = None) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: the problems it can answer with, exactly these codes, each with an example
    (`invalid`: its `invalid_request`'s, a field of its own), grouped by status, all of them the one `Problem`."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS[code], []).append(code)
    return {
        status: {
            "description": ", ".join(f"`{code}`" for code in grouped),
            "headers": {name: _header(name) for name in _HEADERS_OF_STATUS.get(status, [])},
            "content": {
                MEDIA_TYPE: {
                    "schema": PROBLEM,
                    "examples": {
                        code: {"summary": _TITLES[code], "value": _example(code, invalid)} for code in grouped
                    },
                }
            },
        }
        for status, grouped in by_status.items()
    }


OAUTH2_ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "Give grant_type and the client's credentials once, in HTTP Basic or in the form"),
    "unsupported_grant_type": (400, "Only the client_credentials grant is supported"),
    "invalid_client": (401, "Unknown client or wrong secret"),
    "rate_limited": (429, "Try again in 840 seconds"),
    "temporarily_unavailable": (503, "Too many logins at once; try again shortly"),
}


def oauth2_errors() -> dict[int | str, dict[str, Any]]:
    """The token endpoint's errors, as RFC 6749 §5.2 writes them (`application/json`, `error` and
    `error_description`), and what the middleware refuses first."""
    by_status: dict[int, list[str]] = {}
    for error, (status, _) in OAUTH2_ERRORS.items():
        by_status.setdefault(status, []).append(error)
    responses: dict[int | str, dict[str, Any]] = {
        status: {
            "description": ", ".join(f"`{error}`" for error in grouped),
            "headers": {name: _header(name) for name in _HEADERS_OF_STATUS.get(status, [])},
            "content": {
                "application/json": {
                    "schema": {"$ref": REF.format(model="OAuth2Error")},
                    "examples": {
                        error: {"value": {"error": error, "error_description": OAUTH2_ERRORS[error][1]}}
                        for error in grouped
                    },
                }
            },
        }
        for status, grouped in by_status.items()
    }
    return {**responses, **problems(PAYLOAD_TOO_LARGE)}


def _document_idempotency(operation: dict[str, Any]) -> None:
    """An operation that takes `Idempotency-Key` (`@idempotent`) may answer an answer again, and refuse a key reused
    or still in flight (with `Retry-After`): documented here, so that the one line on the route is all it takes."""
    if not any(parameter["name"] == IDEMPOTENCY_KEY for parameter in operation.get("parameters", [])):
        return
    responses = operation["responses"]
    for status, response in responses.items():
        if status.startswith("2"):
            response.setdefault("headers", {})[REPLAYED] = _header(REPLAYED)
    for status, added in problems(errors.IdempotencyKeyInFlight.code, errors.IdempotencyKeyReused.code).items():
        response = responses.setdefault(str(status), added)
        if response is not added:
            response["description"] += ", " + added["description"]
            response.setdefault("headers", {}).update(added["headers"])
            response["content"][MEDIA_TYPE]["examples"].update(added["content"][MEDIA_TYPE]["examples"])
        if status == 409:
            response["headers"]["Retry-After"] = _header("Retry-After")


# The longest each format is written: `2026-11-24T09:00:00.123456+00:00` for an instant.
_FORMAT_LENGTHS = {"uuid": 36, "date": 10, "date-time": 32}
_INT32 = 2**31 - 1


def _tighten(node: Any) -> None:
    """Every bound the service keeps, said where a schema leaves it implicit: how long a UUID, a date and an
    instant are written, and each integer's width (the database's `integer` or `bigint`)."""
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and node.get("format") in _FORMAT_LENGTHS:
        node.setdefault("maxLength", _FORMAT_LENGTHS[node["format"]])
    if node.get("type") == "integer" and "format" not in node:
        node["format"] = "int32" if node.get("maximum", _INT32 + 1) <= _INT32 else "int64"
    for value in node.values():
        _tighten(value)


def _without_null(parameter: dict[str, Any]) -> None:
    """A query parameter is given or left out, never null: FastAPI's `anyOf [X, null]` for an optional one says
    only X, and generated clients take X or nothing."""
    schema = parameter["schema"]
    variants = schema.get("anyOf", [])
    if {"type": "null"} in variants and len(variants) == 2:
        del schema["anyOf"]
        schema.update(next(variant for variant in variants if variant != {"type": "null"}))


def _document_conventions(operation: dict[str, Any]) -> None:
    """What every operation shares, said on each: its `500`, the headers of every answer, the `Link` of a list, the
    limit of a limited operation; and optional query parameters without `null`."""
    responses = operation["responses"]
    parameters = operation.get("parameters", [])
    for parameter in parameters:
        _without_null(parameter)
    if "429" in responses:  # a limited operation tells its limit on every answer
        for status, response in responses.items():
            if status.startswith(("2", "4")):
                response.setdefault("headers", {}).update(headers(*_LIMIT_HEADERS))
    # Any operation may fail (a defect, the database lost mid-request): the one problem it answers then.
    responses.setdefault("500", problems(INTERNAL_ERROR)[500])
    if any(parameter["name"] == CURSOR for parameter in parameters):
        responses["200"].setdefault("headers", {})["Link"] = _header("Link")
    for response in responses.values():
        response.setdefault("headers", {}).update(headers("X-Request-ID", "Access-Control-Allow-Origin"))


def json_response(body: BaseModel, status: int = 200) -> Response:
    """A hot path's answer, serialized once by pydantic's own serializer; the route declares the
    model as `response_model=` for the document, and FastAPI does not validate it a second time."""
    return Response(body.__pydantic_serializer__.to_json(body, by_alias=True), status, media_type="application/json")


def document() -> str:
    """The committed contract, `openapi/openapi.json`: the app's document, byte for byte reproducible."""
    from service.http.app import create_app
    from service.settings import Settings

    # The document needs no database: a URL that is never connected to keeps the embedded one from starting.
    settings = Settings(_env_file=None, database_url="postgresql://openapi.invalid/unused")
    return json.dumps(create_app(settings).openapi(), indent=2, ensure_ascii=False) + "\n"


TAGS = [
    {"name": "installations", "description": "Register installations, read their support state, quote renewals."},
    {"name": "activations", "description": "Activate keys on an installation (public: the keys are the credential)."},
    {"name": "keys", "description": "Issue keys (shown once), list their metadata, revoke them."},
    {"name": "auth", "description": "OAuth2 client credentials: a reseller's client id and secret buy a token."},
    {"name": "resellers", "description": "Admins register resellers, disable and enable them, rotate secrets."},
    {"name": "webhooks", "description": "Endpoints that hear of activations, voids and support ending; deliveries."},
    {"name": "users", "description": "Admins invite the cabinet's users, disable and enable them; the audit log."},
    {"name": "certificates", "description": "The public keys that verify support certificates offline."},
    {"name": "health", "description": "Liveness and readiness, for orchestrators and load balancers."},
]
# `x-internal: false`: the API is meant for resellers' systems, outside the operator's network.
SERVERS = [
    {
        "url": "/",
        "description": "This deployment (production, staging or local: the one serving this document)",
        "x-internal": False,
    }
]
CONTACT = {"name": "Smartec, Timex Support licensing"}
# Schemas no route's signature names, yet the responses and the token endpoint's request refer to.
_SHARED_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (Problem, "serialization"),
    (OAuth2Error, "serialization"),
    (TokenRequest, "validation"),
]


def install(app: FastAPI) -> None:
    """FastAPI documents a 422 validation error on every operation; this service answers those with 400
    `invalid_request`, so the document says what really happens. It adds the shared schemas and headers, tags,
    servers and a contact."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                webhooks=app.webhooks.routes,
                tags=TAGS,
                servers=SERVERS,
                contact=CONTACT,
            )
            for path in schema["paths"].values():
                for operation in path.values():
                    validation = operation["responses"].get("422", {})
                    if "HTTPValidationError" in str(validation.get("content")):
                        del operation["responses"]["422"]
                    _document_idempotency(operation)
                    _document_conventions(operation)
            components = schema.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for event in schema.get("webhooks", {}).values():  # what the receiver answers is its own
                for operation in event.values():
                    del operation["responses"]["422"]
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            _, shared = models_json_schema(_SHARED_MODELS, ref_template=REF)
            for name, model_schema in shared["$defs"].items():
                assert schemas.setdefault(name, model_schema) == model_schema, f"two schemas named {name}"
            components["headers"] = HEADERS
            _tighten(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document
