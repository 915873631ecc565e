"""What routes receive: what the app was built with (its `Runtime`), and the authenticated caller."""

from dataclasses import dataclass
from datetime import date
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from service import resellers
from service.auth import Principal, TokenSettings, verify_token
from service.certificates import CertificateSigner
from service.clock import Clock
from service.driver import Driver
from service.errors import Unauthenticated
from service.ratelimit import FailureLimiter
from service.settings import Settings


@dataclass(frozen=True)
class Runtime:
    """Everything the app is built with, made once by `create_app` (tests build it with a fixed clock).

    The hot routes (support state, quote, activation) take it with `runtime_of(request)` rather than
    as dependencies: FastAPI 0.16x solves every dependency again on each request, and even one cost
    70,000 instructions (callgrind), about 5 % of a support-state read. The other routes name what
    they use as dependencies."""

    settings: Settings
    engine: AsyncEngine
    driver: Driver
    clock: Clock
    signer: CertificateSigner
    limiter: FailureLimiter
    trusted_networks: list[IPv4Network | IPv6Network]

    async def close(self) -> None:
        """Close what the runtime opened; the engine belongs to whoever made it."""
        await self.limiter.counters.close()
        await self.driver.close()


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_settings(request: Request) -> Settings:
    return runtime_of(request).settings


async def get_engine(request: Request) -> AsyncEngine:
    return runtime_of(request).engine


async def get_clock(request: Request) -> Clock:
    return runtime_of(request).clock


async def get_signer(request: Request) -> CertificateSigner:
    return runtime_of(request).signer


def client_address(request: Request) -> str:
    """The caller's address: the peer, or X-Forwarded-For's last hop that is not a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    trusted = runtime_of(request).trusted_networks
    forwarded = request.headers.get("x-forwarded-for")
    if not forwarded or not _within(peer, trusted):
        return peer
    for hop in reversed(forwarded.split(",")):
        hop = hop.strip()
        if not _within(hop, trusted):
            return hop if _is_address(hop) else peer
    return peer


def _is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _within(address: str, networks: list) -> bool:
    return _is_address(address) and any(ip_address(address) in network for network in networks)


async def get_today(clock: "ClockDep") -> date:
    return clock.today()


# Every dependency is `async def`: FastAPI would run a plain `def` in a worker thread, a thread hop per
# dependency per request on the hot paths.
_bearer = HTTPBearer(auto_error=False, description="An access token from `POST /v1/auth/token` or the CLI.")


async def get_principal(
    settings: "SettingsDep",
    engine: "EngineDep",
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller. A reseller's token is checked against its row on every call, so that disabling the reseller
    or rotating its secret refuses the token at once rather than at its expiry; admin tokens are in no database.
    The public hot paths take no token, so they never pay for this read."""
    if credentials is None:
        raise Unauthenticated("An access token is required")
    principal = verify_token(TokenSettings.of(settings), credentials.credentials)
    if principal.reseller_id is not None:
        await resellers.check_access(engine, reseller_id=principal.reseller_id, issued_at=principal.issued_at)
    return principal


async def get_admin(principal: "PrincipalDep") -> Principal:
    principal.require_admin()
    return principal


SignerDep = Annotated[CertificateSigner, Depends(get_signer)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
ClockDep = Annotated[Clock, Depends(get_clock)]
TodayDep = Annotated[date, Depends(get_today)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]
