"""The FastAPI application: routers, problem mapping, and the lifetime of what it opens."""

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from service import embedded
from service.auth import SecretChecks
from service.clock import Clock
from service.delivery import Worker
from service.driver import create_driver
from service.http import cabinet, docs, events, observability, openapi, pages, problems
from service.http.deps import Runtime
from service.http.hot_routes import HotRoutes
from service.http.middleware import RequestLimits
from service.http.observability import Observability
from service.http.routes import (
    activations,
    auth,
    certificates,
    health,
    installations,
    keys,
    resellers,
    users,
    webhooks,
)
from service.idempotency import Sealer
from service.issued_certificates import IssuedCertificates
from service.ratelimit import Limiter, create_counters
from service.settings import Settings, get_settings
from service.signing_keys import SigningKeys, Timing
from service.trust import configured_root
from service.webhooks import AllowedHosts

DESCRIPTION = """
Timex Support licenses: where they are issued, activated and checked.

Timex clients read their support state and activate keys (public calls; the keys are the
credential). Resellers register installations, quote renewals and list their keys with an
access token from `POST /v1/auth/token`. Every error is RFC 9457 `application/problem+json`
with a stable `code`. The licensing rules the operations cite are at [/docs/rules](/docs/rules),
the fixed points of this contract at [/docs/contract](/docs/contract).
"""


# What a browser on an allowed origin may send and read (CORS): the API's own headers, nothing more.
CORS_METHODS = ["GET", "POST", "DELETE"]
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "Accept-Language", "Idempotency-Key", "X-Request-ID"]
CORS_RESPONSE_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Policy",
    "RateLimit",
    "Link",
    "Idempotent-Replayed",
    "Content-Language",
]


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_production()
    counters = create_counters(settings.redis_url, timeout_ms=settings.redis_timeout_ms)
    driver = create_driver(
        embedded.url_for(settings),
        pool_size=settings.database_pool_size,
        transaction_pooler=settings.database_transaction_pooler,
    )
    clock = clock or Clock(settings.zone)
    runtime = Runtime(
        settings=settings,
        driver=driver,
        clock=clock,
        signing_keys=SigningKeys(
            driver=driver,
            clock=clock,
            issuer=settings.jwt_issuer,
            timing=Timing.of(settings),
            secret=settings.certificate_key_secret,
            root=lambda: configured_root(settings.root_certificate, settings.dev_root_dir, clock.now()),
            private_key_pem=settings.certificate_private_key,
            chain_pem=settings.certificate_chain,
        ),
        issued_certificates=IssuedCertificates(settings.certificate_cache_size),
        key_secret=settings.key_hash_secret.encode(),
        sealer=Sealer(settings.key_hash_secret.encode()),
        counters=counters,
        activation_limiter=Limiter(
            counters,
            limit=settings.activation_failure_limit,
            window=settings.activation_failure_window_seconds,
            prefix=f"{settings.rate_limit_prefix}:activation",
        ),
        token_limiter=Limiter(
            counters,
            limit=settings.token_failure_limit,
            window=settings.token_failure_window_seconds,
            prefix=f"{settings.rate_limit_prefix}:token",
        ),
        secret_checks=SecretChecks(concurrency=settings.secret_check_concurrency, queue=settings.secret_check_queue),
        trusted_networks=settings.trusted_networks,
        webhook_allowed_hosts=AllowedHosts(settings.webhook_allowed_hosts),
    )

    spans = None
    if settings.otel_exporter_otlp_endpoint:
        from service.http.otlp import Spans  # OpenTelemetry's SDK, loaded only when spans are exported

        spans = Spans(settings.otel_exporter_otlp_endpoint, "timex-licensing", version("timex-licensing"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # What start-up made lives as long as the process: a full collection need not scan it again
        # (here it took 70 ms, every request in the process waiting, and set the read p99).
        gc.freeze()
        await runtime.counters.check()  # a Redis too old is an error in the log now, not at the first attempt
        stop = asyncio.Event()
        worker = None
        if settings.webhook_worker_in_serve:
            worker = Worker(driver=runtime.driver, clock=runtime.clock, settings=settings, render=events.render)
            delivering = asyncio.create_task(worker.run(stop))
        yield
        if worker is not None:
            stop.set()
            await delivering
            await worker.close()
        await runtime.close()
        if spans is not None:
            await asyncio.to_thread(spans.close)  # exports what is left: a network call

    # FastAPI's own OpenTelemetry hooks are off: the service's telemetry is `Observability` (Prometheus and
    # JSON logs), and the hooks would look up three OpenTelemetry providers on every request.
    app = FastAPI(
        title="Timex Support licensing",
        version=version("timex-licensing"),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    problems.install(app)
    openapi.install(app)
    # Innermost of the app's middleware: the hot routes' requests pass the limits and are counted first.
    app.add_middleware(HotRoutes, routes=app.router.routes)
    app.add_middleware(RequestLimits, max_bytes=settings.max_body_bytes, default_language=settings.default_language)
    if settings.cors_allowed_origins:  # off by default: not even a layer on the hot paths
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
            # Bearer tokens, not cookies: a browser never needs to send credentials, so it is never told it may.
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(Observability, spans=spans)
    # Requests are matched against routes in this order: the hot paths first. The routers' routes join the
    # app's own table, their prefixes and tags already in each route: `include_router` would keep each router as
    # a branch that FastAPI matches a second time on every request (5 % of a support read). So
    # `app.dependency_overrides` does not reach them; tests build the app with what they change (its clock).
    for module in (
        installations,
        activations,
        auth,
        resellers,
        keys,
        certificates,
        webhooks,
        users,
        health,
        observability,
    ):
        app.router.routes.extend(module.router.routes)
    events.install(app)
    docs.install(app)
    pages.install(app)
    cabinet.install(app)
    return app
