"""A cabinet visitor over plain HTTP (no browser): follows the forms as a browser would, each post carrying the
`csrf_token` of the page it came from and the browser's `Sec-Fetch-Site`."""

import re
from contextlib import asynccontextmanager
from typing import Any

import httpx

from service import totp
from tests.api import Api

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Visitor:
    def __init__(self, client: httpx.AsyncClient):
        self.client = client
        self.csrf = ""

    @classmethod
    @asynccontextmanager
    async def of(cls, api: Api, address: str = "127.0.0.1", base_url: str = "http://localhost", **headers: str):
        transport = httpx.ASGITransport(app=api.transport.app, raise_app_exceptions=False, client=(address, 50000))  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=transport, base_url=base_url, headers=headers) as client:
            yield cls(client)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.get(path, **kwargs)
        if found := CSRF.search(response.text):
            self.csrf = found.group(1)
        return response

    async def post(self, path: str, data: dict[str, str], csrf: bool = True) -> httpx.Response:
        form = {**data, "csrf_token": self.csrf} if csrf else data
        response = await self.client.post(path, data=form, headers={"Sec-Fetch-Site": "same-origin"})
        if found := CSRF.search(response.text):
            self.csrf = found.group(1)
        return response

    @staticmethod
    def sealed(html: str) -> str:
        found = re.search(r'name="sealed" value="([^"]+)"', html)
        assert found, "the page carries a sealed value"
        return found.group(1)

    async def sign_in(self, username: str, password: str) -> httpx.Response:
        await self.get("/cabinet/login")
        return await self.post("/cabinet/login", {"username": username, "password": password})

    async def set_password(self, setup_url: str, password: str) -> httpx.Response:
        path = httpx.URL(setup_url).path
        await self.get(path)
        return await self.post(path, {"password": password, "password_confirmation": password})


async def invite(api: Api, username: str, role: str = "admin", reseller_id: str | None = None) -> dict:
    response = await api.post(
        "/v1/users", {"username": username, "role": role, "reseller_id": reseller_id}, headers=api.admin
    )
    assert response.status_code == 201, response.text
    return response.json()


PASSWORD = "correct horse battery staple"


async def signed_in_user(
    api: Api, visitor: Visitor, username: str, role: str = "admin", reseller_id: str | None = None
) -> dict:
    """A user invited through the API, its password set at its link, signed in with `visitor`."""
    user = await invite(api, username, role, reseller_id)
    assert (await visitor.set_password(user["setup_url"], PASSWORD)).status_code == 303
    assert (await visitor.sign_in(username, PASSWORD)).status_code == 303
    return user


async def enroll_totp(api: Api, visitor: Visitor) -> bytes:
    """Two-step sign-in set up by the signed-in user of `visitor`, as its page asks: its secret."""
    page = await visitor.get("/cabinet/totp")
    secret = totp.secret_of(re.search(r'id="totp-secret"[^>]*>([A-Z2-7]+)<', page.text).group(1))
    code = totp.code_at(secret, totp.step_of(api.clock.now()))
    assert (await visitor.post("/cabinet/totp", {"sealed": visitor.sealed(page.text), "code": code})).status_code == 303
    return secret
