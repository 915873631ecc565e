"""Request ids, one JSON access-log line per request, and Prometheus metrics: one pure ASGI
middleware, so that the hot paths pay for one clock read and a few counter updates."""

import logging
import os
import re
import secrets
import time
from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import signing_keys, tracing, webhooks
from service.http.deps import require_metrics_access, runtime_of
from service.ratelimit import QUOTA, Quota

if TYPE_CHECKING:
    from service.http.otlp import Spans  # its SDK loaded only when spans are exported (create_app)

access_log = logging.getLogger("service.access")
events_log = logging.getLogger("service.events")
# No log line names its caller, thread or process (the formats of `cli.LOGGING`): not looked up for every line, as
# the logging HOWTO's "Optimization" says (a quarter of a line's cost).
logging._srcfile = None
logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False

REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ACTIVATIONS = Counter(
    "activations_total", "Activation requests by outcome: activated, replayed or a refusal code", ["outcome"]
)
KEYS_ISSUED = Counter("keys_issued_total", "License keys issued")
KEYS_REVOKED = Counter("keys_revoked_total", "Revocations of unused keys (POST /v1/keys/{key_id}/revoke)")
# Read from the database on every scrape, whichever process delivers: the latest reading is the one that counts.
WEBHOOK_OLDEST_UNDELIVERED = Gauge(
    "webhook_oldest_undelivered_seconds",
    "Age of the oldest webhook event not yet delivered to every endpoint that wants it (0: none)",
    multiprocess_mode="mostrecent",
)

SIGNING_KEY_AGE = Gauge(
    "signing_key_age_seconds",
    "How long the key that signs support certificates has signed (0: none in the database); read at each scrape",
    multiprocess_mode="mostrecent",
)

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


_SERIES: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def _series(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """A request's counter and histogram, looked up once per route, method and status: `labels()`
    checks and locks on every call, which costs more than the update itself."""
    series = _SERIES.get((route, method, status))
    if series is None:
        series = _SERIES[route, method, status] = (
            REQUESTS.labels(route, method, status),
            LATENCY.labels(route, method),
        )
    return series


def event(name: str, **fields: object) -> None:
    """A business event as one JSON line: ids and figures, never a key or a secret; and its request's trace."""
    trace = tracing.CURRENT.get()
    trace_id = None if trace is None else trace.trace_id
    events_log.info(orjson.dumps({"event": name, **fields, "trace_id": trace_id}, default=str).decode())


def quota_headers(quota: Quota) -> list[tuple[bytes, bytes]]:
    """The IETF httpapi draft's `RateLimit-Policy` and `RateLimit` (structured fields): the policy's quota `q` of
    failures in a window of `w` seconds; `r` more that may fail now, `t` seconds until the counted ones are
    forgotten (a whole window when none are counted yet)."""
    decision = quota.decision
    return [
        (b"ratelimit-policy", f'"{quota.policy}";q={decision.limit};w={quota.window}'.encode()),
        (b"ratelimit", f'"{quota.policy}";r={decision.remaining};t={decision.reset or quota.window}'.encode()),
    ]


class Observability:
    def __init__(self, app: ASGIApp, spans: "Spans | None" = None):
        self.app = app
        self.spans = spans
        """Only with `OTEL_EXPORTER_OTLP_ENDPOINT`: each request's span, exported."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request_id = traceparent = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
            elif name == b"traceparent":
                traceparent = value
        if not _REQUEST_ID.match(request_id):
            request_id = secrets.token_hex(16).encode()
        trace = tracing.continued(traceparent)
        span = None
        if self.spans is not None:
            span, trace = self.spans.start(trace, scope["method"], time.time_ns())
        tracing.CURRENT.set(trace)
        status = 500
        QUOTA.set(None)  # a limit checked by this request, and only this one, is reported in its answer

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id),
                    (b"traceparent", trace.traceparent.encode()),
                ]
                quota = QUOTA.get()
                if quota is not None:
                    message["headers"] += quota_headers(quota)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            requests, latency = _series(route, scope["method"], status)
            requests.inc()
            latency.observe(elapsed)
            if self.spans is not None:
                self.spans.end(span, method=scope["method"], route=route, status=status, end_ns=time.time_ns())
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    orjson.dumps(
                        {
                            "method": scope["method"],
                            "route": route,
                            # A path that carries a secret (a cabinet setup link's `{token}`) is logged as its route.
                            "path": route if "{token}" in route else scope["path"],
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 3),
                            "request_id": request_id.decode(),
                            "trace_id": trace.trace_id,
                        }
                    ).decode()
                )


router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Requests by route, method and status with latency histograms; activations by outcome; keys issued
    and revoked; the rate limits' store; webhook deliveries by outcome and the oldest undelivered event's age; the
    signing key's age.
    Only for `METRICS_TOKEN` (as a bearer token) or a client in `METRICS_NETWORKS`. With several worker processes
    set `PROMETHEUS_MULTIPROC_DIR` so that every scrape adds up all of them."""
    require_metrics_access(request)
    runtime = runtime_of(request)
    oldest = await webhooks.oldest_undelivered(driver=runtime.driver)
    WEBHOOK_OLDEST_UNDELIVERED.set(0 if oldest is None else (runtime.clock.now() - oldest).total_seconds())
    now = runtime.clock.now()
    signing_since = await signing_keys.signing_since(driver=runtime.driver, now=now)
    SIGNING_KEY_AGE.set(0 if signing_since is None else (now - signing_since).total_seconds())
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
