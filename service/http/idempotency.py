"""`Idempotency-Key` on the routes that create something: `@idempotent`, one line under the route's decorator.

Only those routes pay for it, and only when the header is sent: no middleware buffers any other request. The
rules are `service.idempotency`'s; here is what is stored of an answer, and when:

- an answer of the route itself (2xx) or one of its refusals (a `DomainError`: 4xx) is stored, and answered
  again to the same request;
- a refusal worth retrying (`429`, `503`) or an unexpected error (`500`) is not: the claim is released, so the
  retry runs afresh;
- what is refused before the route runs (a malformed body `400`, a missing token `401`, not an admin `403`)
  claims nothing.
"""

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response, status
from pydantic import BaseModel

from service import idempotency
from service.auth import Principal
from service.errors import DomainError, RateLimited, Unavailable
from service.http import problems
from service.http.deps import PrincipalDep, Runtime, runtime_of
from service.http.openapi import json_response

log = logging.getLogger("service.http")

REPLAYED_HEADER = "Idempotent-Replayed"
_RETRYABLE = (RateLimited, Unavailable)


@dataclass(frozen=True)
class _Keyed:
    request: Request
    attempt: idempotency.Attempt


def scope_of(principal: Principal) -> str:
    """Whose keys: each admin's and each reseller's are apart."""
    return f"{principal.role}:{principal.subject}"


async def _keyed(
    request: Request,
    principal: PrincipalDep,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Any 1 to 255 printable ASCII characters, new for each request (a UUID): the same request "
            "sent again with the same key within `IDEMPOTENCY_TTL_HOURS` (24) gets the first answer again, "
            f"with `{REPLAYED_HEADER}: true`, and creates nothing.",
        ),
    ] = None,
) -> _Keyed | None:
    if key is None:
        return None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    attempt = idempotency.attempt(
        scope=scope_of(principal), key=key, method=request.method, target=target, body=await request.body()
    )
    return _Keyed(request, attempt)


Endpoint = Callable[..., Awaitable[BaseModel]]
_PARAMETER = "idempotency_key__"


def idempotent(endpoint: Endpoint) -> Callable[..., Awaitable[BaseModel | Response]]:
    """The route answers a request that carries `Idempotency-Key` once: the same request again gets that answer
    (see the module's docstring). The route's own parameters are untouched; it gains the header's."""
    signature = inspect.signature(endpoint)
    keyed = inspect.Parameter(
        _PARAMETER, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[_Keyed | None, Depends(_keyed)]
    )

    @functools.wraps(endpoint)
    async def answer(**arguments: Any) -> BaseModel | Response:
        keyed: _Keyed | None = arguments.pop(_PARAMETER)
        if keyed is None:
            return await endpoint(**arguments)
        return await _answer_once(keyed, functools.partial(endpoint, **arguments))

    answer.__signature__ = signature.replace(parameters=[*signature.parameters.values(), keyed])  # type: ignore[attr-defined]
    return answer


async def _answer_once(keyed: _Keyed, run: Callable[[], Awaitable[BaseModel]]) -> Response:
    request, attempt = keyed.request, keyed.attempt
    runtime: Runtime = runtime_of(request)
    claimed = await idempotency.claim(
        driver=runtime.driver,
        attempt=attempt,
        now=runtime.clock.now(),
        ttl=timedelta(hours=runtime.settings.idempotency_ttl_hours),
        sealer=runtime.sealer,
    )
    if isinstance(claimed, idempotency.Answer):
        return Response(
            claimed.body, claimed.status, headers={REPLAYED_HEADER: "true"}, media_type=claimed.content_type
        )
    try:
        response = json_response(await run(), request.scope["route"].status_code or status.HTTP_200_OK)
    except DomainError as refusal:
        if isinstance(refusal, _RETRYABLE):
            await idempotency.release(driver=runtime.driver, claim=claimed)
            raise
        response = await problems.domain_error(request, refusal)
    except Exception:
        await idempotency.release(driver=runtime.driver, claim=claimed)
        raise
    answer = idempotency.Answer(response.status_code, response.media_type or "application/json", bytes(response.body))
    try:
        await idempotency.store(driver=runtime.driver, claim=claimed, answer=answer, sealer=runtime.sealer)
    except Unavailable:
        # The work is done: its answer is the client's even if it cannot be kept. The claim stays unanswered,
        # so a retry is refused as in flight until `CLAIM_TIMEOUT`, and then runs afresh.
        log.warning("an idempotent answer could not be stored")
    return response
