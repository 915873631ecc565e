"""The OpenAPI document: every operation lists the problem+json errors it can answer with."""

import json
from typing import Any

from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from service.http.schemas.problem import Problem

MEDIA_TYPE = "application/problem+json"

_ERRORS = {
    400: "`invalid_request`: malformed JSON or UTF-8, wrong types, unknown fields, out-of-range values, control "
    "characters, a repeated query parameter",
    401: "`unauthenticated`: a missing, expired or badly signed access token",
    402: "`licenses_insufficient` ([R6](/docs/rules#r6)): the keys would not bring support current; "
    "`quote` says what would",
    403: "`forbidden`: the token lacks the role, or the resource is another reseller's",
    404: "`installation_not_found`, `key_not_found`, `reseller_not_found`, `activation_not_found`",
    409: "`key_already_used`, `key_revoked`, `key_duplicated`, `installation_exists`, `reseller_exists`, "
    "`idempotency_key_in_flight` (see `Retry-After`)",
    413: "`payload_too_large`: the request body is over the limit",
    422: "`key_malformed`: a key fails its format or check symbols (a typo); `idempotency_key_reused`: the "
    "`Idempotency-Key` was sent with another request",
    429: "`rate_limited`: too many failed activations; see `Retry-After`",
    503: "`unavailable`: the database cannot be reached; nothing was written; see `Retry-After`",
}

_PROBLEM_SCHEMA = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
_PROBLEM_SCHEMA.pop("$defs", None)


def json_response(body: BaseModel, status: int = 200) -> Response:
    """A hot path's answer, serialized once by pydantic's own serializer; the route declares the
    model as `response_model=` for the document, and FastAPI does not validate it a second time."""
    return Response(body.__pydantic_serializer__.to_json(body, by_alias=True), status, media_type="application/json")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: its problem+json errors, documented."""
    return {
        status: {"description": _ERRORS[status], "content": {MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}}}
        for status in statuses
    }


def document() -> str:
    """The committed contract, `openapi/openapi.json`: the app's document, byte for byte reproducible."""
    from service.http.app import create_app
    from service.settings import Settings

    return json.dumps(create_app(Settings(_env_file=None)).openapi(), indent=2, ensure_ascii=False) + "\n"


def install(app: FastAPI) -> None:
    """FastAPI documents a 422 validation error on every operation; this service answers those
    with 400 `invalid_request`, so the document says what really happens."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            for path in schema["paths"].values():
                for operation in path.values():
                    validation = operation["responses"].get("422", {})
                    if "HTTPValidationError" in str(validation.get("content")):
                        del operation["responses"]["422"]
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document
