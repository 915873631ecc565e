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
from service.http.deps import AdminDep, PrincipalDep, Runtime, runtime_of
from service.http.openapi import IDEMPOTENCY_KEY, REPLAYED, json_response

log = logging.getLogger("service.http")

_RETRYABLE = (RateLimited, Unavailable)


@dataclass(frozen=True)
class _Keyed:
    request: Request
    key: str | None


def scope_of(principal: Principal) -> str:
    """Whose keys: each admin's and each reseller's are apart."""
    return f"{principal.role}:{principal.subject}"


async def _keyed(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_KEY,
            description="Any 1 to 255 printable ASCII characters, new for each request (a UUID): the same request "
            "sent again with the same key within `IDEMPOTENCY_TTL_HOURS` (24) gets the first answer again, "
            f"with `{REPLAYED}: true`, and creates nothing.",
            # Checked by `service.idempotency` (its own message), so only said here.
            json_schema_extra={"minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]{1,255}$"},
        ),
    ] = None,
) -> _Keyed:
    return _Keyed(request, key)


async def _attempt(request: Request, key: str, principal: Principal) -> idempotency.Attempt:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return idempotency.attempt(
        scope=scope_of(principal), key=key, method=request.method, target=target, body=await request.body()
    )


Endpoint = Callable[..., Awaitable[BaseModel]]
_PARAMETER = "idempotency_key__"


def idempotent(endpoint: Endpoint) -> Callable[..., Awaitable[BaseModel | Response]]:
    """The route answers a request that carries `Idempotency-Key` once: the same request again gets that answer
    (see the module's docstring). The route's own parameters are untouched; it gains the header's. The route takes
    its caller (`PrincipalDep` or `AdminDep`): keys are each caller's own."""
    signature = inspect.signature(endpoint)
    [caller] = [name for name, p in signature.parameters.items() if p.annotation in (PrincipalDep, AdminDep)]
    keyed = inspect.Parameter(_PARAMETER, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[_Keyed, Depends(_keyed)])

    @functools.wraps(endpoint)
    async def answer(**arguments: Any) -> BaseModel | Response:
        keyed: _Keyed = arguments.pop(_PARAMETER)
        if keyed.key is None:
            return await endpoint(**arguments)
        attempt = await _attempt(keyed.request, keyed.key, arguments[caller])
        return await _answer_once(keyed.request, attempt, functools.partial(endpoint, **arguments))

    answer.__signature__ = signature.replace(parameters=[*signature.parameters.values(), keyed])  # type: ignore[attr-defined]
    return answer


async def _answer_once(
    request: Request, attempt: idempotency.Attempt, run: Callable[[], Awaitable[BaseModel]]
) -> Response:
    runtime: Runtime = runtime_of(request)
    claimed = await idempotency.claim(
        driver=runtime.driver,
        attempt=attempt,
        now=runtime.clock.now(),
        ttl=timedelta(hours=runtime.settings.idempotency_ttl_hours),
        sealer=runtime.sealer,
    )
    if isinstance(claimed, idempotency.Answer):
        return Response(claimed.body, claimed.status, headers={REPLAYED: "true"}, media_type=claimed.content_type)
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
