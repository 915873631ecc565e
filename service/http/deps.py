"""What routes receive: what the app was built with (its `Runtime`), and the authenticated caller."""

import hmac
import socket
from dataclasses import dataclass
from datetime import date
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2

from service import resellers
from service.auth import Principal, SecretChecks, TokenSettings, verify_token
from service.clock import Clock
from service.driver import Driver
from service.errors import N_, Forbidden, Unauthenticated
from service.idempotency import Sealer
from service.issued_certificates import IssuedCertificates
from service.ratelimit import Counters, Limiter
from service.settings import Settings
from service.signing_keys import SigningKeys
from service.webhooks import AllowedHosts

TOKEN_URL = "/v1/auth/token"


@dataclass(frozen=True)
class Runtime:
    """Everything the app is built with, made once by `create_app` (tests build it with a fixed clock).

    The hot routes (support state, quote, activation) take it with `runtime_of(request)` rather than
    as dependencies: FastAPI 0.16x solves every dependency again on each request, and even one cost
    70,000 instructions (callgrind), about 5 % of a support-state read. The other routes name what
    they use as dependencies."""

    settings: Settings
    driver: Driver
    clock: Clock
    signing_keys: SigningKeys
    """The deployment's signing keys, as this process last read them."""
    issued_certificates: IssuedCertificates
    """The certificates this process signed for support reads, reused for the same statement."""
    key_secret: bytes
    """`KEY_HASH_SECRET` as bytes, made once: what keys are hashed under."""
    counters: Counters
    activation_limiter: Limiter
    token_limiter: Limiter
    sealer: Sealer
    """What stored idempotent answers are encrypted under (a key derived from `KEY_HASH_SECRET`)."""
    secret_checks: SecretChecks
    trusted_networks: list[IPv4Network | IPv6Network]
    webhook_allowed_hosts: AllowedHosts
    """`WEBHOOK_ALLOWED_HOSTS`, read once (a malformed entry stops the start)."""

    async def close(self) -> None:
        """Close what the runtime opened."""
        await self.counters.close()
        await self.driver.close()


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_app_settings(request: Request) -> Settings:
    """The settings `create_app` was given (tests give their own), which need not be `get_settings()`'s."""
    return runtime_of(request).settings


async def get_driver(request: Request) -> Driver:
    return runtime_of(request).driver


async def get_clock(request: Request) -> Clock:
    return runtime_of(request).clock


async def get_signing_keys(request: Request) -> SigningKeys:
    return runtime_of(request).signing_keys


def client_address(request: Request) -> str:
    """The caller's address, canonical (see `_client`), or `unknown` when the peer has none."""
    client = _client(request)
    return UNKNOWN_ADDRESS if client is None else str(client)


UNKNOWN_ADDRESS = "unknown"

Address = IPv4Address | IPv6Address


def _client(request: Request) -> Address | None:
    """The peer, or, when the peer is a trusted proxy, the rightmost X-Forwarded-For hop that is not one. Every
    X-Forwarded-For line counts, in order (RFC 9110 §5.3): a proxy that adds its own line must not leave the
    client's line to speak for it."""
    peer = _canonical(request.client.host) if request.client else None
    trusted = runtime_of(request).trusted_networks
    if peer is None or not _within(peer, trusted):
        return peer
    hops = [hop for line in request.headers.getlist("x-forwarded-for") for hop in line.split(",")]
    for hop in reversed(hops):
        address = _canonical(hop)
        if address is None:
            return peer  # a hop no trusted proxy would write: believe nothing to its left
        if not _within(address, trusted):
            return address
    return peer


def _canonical(text: str) -> Address | None:
    """One value per address, so one spelling: an IPv4-mapped IPv6 address as IPv4, no zone id (written out,
    at most 39 characters); None for anything else."""
    text = text.strip().partition("%")[0]
    try:
        # A dotted quad, the usual client, parsed in C: `inet_pton` takes exactly the IPv4 addresses `ip_address`
        # takes (four decimal parts of 0–255, no leading zeros; `tests/test_api_rate_limits.py` holds them equal).
        return IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):
        pass
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: list[IPv4Network | IPv6Network]) -> bool:
    return any(address in network for network in networks)


def require_metrics_access(request: Request) -> None:
    """Metrics tell an attacker how the service is doing: only `METRICS_TOKEN`'s bearer or a client in
    `METRICS_NETWORKS` may read them; with neither set, nobody."""
    settings = runtime_of(request).settings
    token = settings.metrics_token
    if token and hmac.compare_digest(request.headers.get("authorization", "").encode(), f"Bearer {token}".encode()):
        return
    networks = settings.metrics_allowed_networks
    client = _client(request)
    if client is not None and _within(client, networks):
        return
    raise Forbidden(N_("Metrics are served to the configured token or networks only"))


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


async def get_today(clock: "ClockDep") -> date:
    return clock.today()


# Every dependency is `async def`: FastAPI would run a plain `def` in a worker thread, a thread hop per
# dependency per request on the hot paths.
# What `auth.verify_token` holds every token to, as RFC8725 (JWT best current practices) asks.
_JWT_PRACTICE = (
    " A JWT as RFC8725 recommends: HS256 only (any other `alg`, `none` included, is refused), its issuer, audience "
    "and expiry required and checked."
)
_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="An access token: an admin's from `timex-licensing token`, or a reseller's from "
    "`POST /v1/auth/token` (which `OAuth2ClientCredentials` fetches by itself)." + _JWT_PRACTICE,
)
# The same bearer token, and where a reseller gets one: with this scheme, Swagger UI's Authorize and generated
# clients fetch a token from the client id and secret themselves.
_reseller_oauth2 = OAuth2(
    flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_URL, scopes={})),
    scheme_name="OAuth2ClientCredentials",
    description="A reseller's client id and secret, traded at `POST /v1/auth/token` for a bearer token."
    + _JWT_PRACTICE,
    auto_error=False,
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _principal(settings: Settings, driver: Driver, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The caller. A reseller's token is checked against its row on every call, so that disabling the reseller
    or rotating its secret refuses the token at once rather than at its expiry; admin tokens are in no database.
    The public hot paths take no token, so they never pay for this read."""
    if credentials is None:
        raise Unauthenticated(N_("An access token is required"))
    principal = verify_token(TokenSettings.of(settings), credentials.credentials)
    if principal.reseller_id is not None:
        await resellers.check_access(driver=driver, reseller_id=principal.reseller_id, issued_at=principal.issued_at)
    return principal


async def get_principal(
    settings: "SettingsDep",
    driver: "DriverDep",
    credentials: BearerCredentials,
    _reseller_oauth2: Annotated[str | None, Depends(_reseller_oauth2)],
) -> Principal:
    """Admins and resellers. The OAuth2 scheme reads the same `Authorization` header as `_bearer`: it is named
    here so that the document offers resellers both ways to their token."""
    return await _principal(settings, driver, credentials)


async def get_admin(settings: "SettingsDep", driver: "DriverDep", credentials: BearerCredentials) -> Principal:
    """Admins only: a reseller's token is `403 forbidden` (and `401` when no longer good at all)."""
    principal = await _principal(settings, driver, credentials)
    principal.require_admin()
    return principal


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SigningKeysDep = Annotated[SigningKeys, Depends(get_signing_keys)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
DriverDep = Annotated[Driver, Depends(get_driver)]
ClockDep = Annotated[Clock, Depends(get_clock)]
TodayDep = Annotated[date, Depends(get_today)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]
