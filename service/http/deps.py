"""What routes receive: the engine, settings, clock and the authenticated caller."""

from datetime import date
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth import Principal, TokenSettings, verify_token
from service.clock import Clock
from service.errors import Unauthenticated
from service.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> AsyncEngine:
    return request.app.state.engine


def get_clock(request: Request) -> Clock:
    return request.app.state.clock


def get_today(clock: "ClockDep") -> date:
    return clock.today()


_bearer = HTTPBearer(auto_error=False, description="An access token from `POST /v1/auth/token` or the CLI.")


def get_principal(
    settings: "SettingsDep",
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthenticated("An access token is required")
    return verify_token(TokenSettings.of(settings), credentials.credentials)


def get_admin(principal: "PrincipalDep") -> Principal:
    principal.require_admin()
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
ClockDep = Annotated[Clock, Depends(get_clock)]
TodayDep = Annotated[date, Depends(get_today)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]
