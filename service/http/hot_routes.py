"""The three hottest operations (support state, quote, activation) dispatched without FastAPI's routing and
request handling, to the same endpoint functions, validating with the same types.

FastAPI's handling (route matching, `solve_dependencies`, which parses the query string, headers and cookies of
every request, two exit stacks) was a third of a support read's CPU. `HotRoutes` sits inside the app's own
middleware (metrics, logs and limits see every request as before) and answers the straight-line case itself:
the path matched, its installation code validated by the route's own type, a body by the route's own model, and
the route's endpoint called. Anything else (a query string, a bad code or body, another content type) goes on
to FastAPI's route, which answers it as before: one validation, one error mapping (the app's own handlers), one
API document (the routes' declarations, which are still the app's routes).
"""

import re
from collections.abc import Awaitable, Callable

from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import DomainError
from service.http.routes import activations, installations
from service.http.schemas.activations import ActivationIn
from service.http.schemas.common import InstallationCode

_CODE = TypeAdapter(InstallationCode)
_INSTALLATION_PATH = re.compile(r"/v1/installations/([^/]+)/(support|quote)")
_ACTIVATIONS_PATH = "/v1/activations"

Endpoint = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    def __init__(self, app: ASGIApp, routes: list[BaseRoute]):
        self.app = app
        # The app's own route objects: `scope["route"]` names them for the metrics and logs, as routing would.
        by_name = {getattr(route, "endpoint", None): route for route in routes}
        self._support = by_name[installations.support]
        self._quote = by_name[installations.quote]
        self._activate = by_name[activations.activate]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["query_string"]:
            method, path = scope["method"], scope["path"]
            if method == "GET" and (matched := _INSTALLATION_PATH.fullmatch(path)):
                return await self._installation(scope, receive, send, *matched.groups())
            if method == "POST" and path == _ACTIVATIONS_PATH:
                return await self._activation(scope, receive, send)
        await self.app(scope, receive, send)

    async def _installation(self, scope: Scope, receive: Receive, send: Send, code: str, what: str) -> None:
        try:
            valid = _CODE.validate_python(code)
        except ValidationError:
            return await self.app(scope, receive, send)  # the route's own answer to a bad code
        request = Request(scope, receive)
        if what == "support":
            scope["route"] = self._support
            await _answer(request, send, lambda: installations.support(valid, request))
        else:
            scope["route"] = self._quote
            await _answer(request, send, lambda: installations.quote(valid, request))

    async def _activation(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (b"content-type", b"application/json") not in scope["headers"]:
            return await self.app(scope, receive, send)
        try:
            body, messages = await _read(receive)
        except HTTPException as refused:  # a body over the limit (`RequestLimits`), as the route would answer it
            request = Request(scope, receive)
            response = await request.app.exception_handlers[HTTPException](request, refused)
            return await response(scope, receive, send)
        try:
            activation = ActivationIn.model_validate_json(body)
        except ValidationError:
            return await self.app(scope, _replay(messages), send)  # the route's own answer to a bad body
        scope["route"] = self._activate
        request = Request(scope, _replay(messages))
        await _answer(request, send, lambda: activations.activate(activation, request))


async def _answer(request: Request, send: Send, endpoint: Callable[[], Awaitable[Response]]) -> None:
    """The endpoint's response; a refusal answered by the app's own handler for it, as FastAPI would."""
    try:
        response = await endpoint()
    except DomainError as refusal:
        response = await request.app.exception_handlers[DomainError](request, refusal)
    await response(request.scope, request.receive, send)


async def _read(receive: Receive) -> tuple[bytes, list[Message]]:
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    return b"".join(m.get("body", b"") for m in messages), messages


def _replay(messages: list[Message]) -> Receive:
    """The body read, given again to whoever reads it next; then what the client sends (a disconnect)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive
