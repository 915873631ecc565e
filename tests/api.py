"""A thin test client for the v1 API: httpx against the ASGI app, plus small factories that arrange
data the way a user would, through the API itself."""

from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth import TokenSettings, issue_token
from service.driver import Driver
from service.http.app import create_app
from service.settings import Settings
from tests.clock import FixedClock

ISSUED_KEYS: set[str] = set()
"""Every plaintext key the suite was given, so that the logs can be searched for them."""


class Api:
    def __init__(
        self,
        client: httpx.AsyncClient,
        transport: httpx.AsyncBaseTransport,
        settings: Settings,
        clock: FixedClock,
        engine: AsyncEngine,
        driver: Driver,
    ):
        self.client = client
        self.transport = transport
        """The app as an httpx transport, for other clients (an OAuth2 library's, a generated one)."""
        self.settings = settings
        self.clock = clock
        self.engine = engine
        """The test's own way to the database, to arrange what the API cannot, and to clean up."""
        self.driver = driver
        """The service's own."""
        self.admin = self.headers_for("admin", "test-admin")

    @classmethod
    @asynccontextmanager
    async def started(cls, settings: Settings, engine: AsyncEngine, today: date, client_address: str = "127.0.0.1"):
        clock = FixedClock(settings.zone, today)
        app = create_app(settings, clock=clock)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(client_address, 50000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                yield cls(client, transport, settings, clock, engine, app.state.runtime.driver)
        finally:
            await app.state.runtime.close()

    def stand_on(self, day: date) -> None:
        """Move the service's clock to `day`: from now on it is today."""
        self.clock.set(day)

    def shift_instants(self, by: timedelta) -> None:
        """The service's instants (a certificate's `iat`) run `by` from the real ones, which a client checks
        against; `timedelta()` to put them back."""
        self.clock.shift(by)

    def headers_for(
        self,
        role: str,
        subject: str,
        lifetime: timedelta = timedelta(minutes=5),
        token_settings: TokenSettings | None = None,
    ) -> dict[str, str]:
        token = issue_token(
            token_settings or TokenSettings.of(self.settings), role, subject, self.clock.now(), lifetime
        )
        return {"Authorization": f"Bearer {token}"}

    # --- requests

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        response = await self.client.post(path, json=json, **kwargs)
        if path == "/v1/keys" and response.status_code == 201:
            ISSUED_KEYS.update(k["key"] for k in response.json()["keys"])
        return response

    # --- factories: each asserts its own success so a test reads only what it is about

    async def reseller(self, name: str = "Partner") -> dict:
        response = await self.post("/v1/resellers", {"name": name}, headers=self.admin)
        assert response.status_code == 201, response.text
        body = response.json()
        body["headers"] = self.headers_for("reseller", body["id"])
        return body

    async def installation(self, code: str = "INST-1", headers: dict | None = None, **origin: Any) -> dict:
        origin = origin or {"purchased_on": "2025-03-15"}
        body = {"code": code, **{k: str(v) if isinstance(v, date) else v for k, v in origin.items()}}
        response = await self.post("/v1/installations", body, headers=headers or self.admin)
        assert response.status_code == 201, response.text
        return response.json()

    async def keys(self, count: int = 1, reseller_id: str | None = None) -> list[str]:
        response = await self.post("/v1/keys", {"count": count, "reseller_id": reseller_id}, headers=self.admin)
        assert response.status_code == 201, response.text
        return [k["key"] for k in response.json()["keys"]]

    async def activate(self, code: str, keys: list[str], **kwargs: Any) -> httpx.Response:
        return await self.post("/v1/activations", {"installation": code, "keys": keys}, **kwargs)

    async def support(self, code: str) -> dict:
        """The support state, less its certificate (signed afresh on every call)."""
        response = await self.get(f"/v1/installations/{code}/support")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body.pop("certificate")
        return body

    async def key_statuses(self) -> dict[str, str]:
        response = await self.get("/v1/keys", params={"limit": 1000}, headers=self.admin)
        assert response.status_code == 200, response.text
        return {k["key_id"]: k["status"] for k in response.json()["items"]}
