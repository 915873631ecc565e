"""A reseller's browser-based back office calls the API from the origins in `CORS_ALLOWED_ORIGINS` (none by
default): its preflight is answered, its answers readable, and no browser is ever told to send credentials."""

from collections.abc import AsyncIterator

import pytest

from tests.api import Api
from tests.conftest import make_settings, service

pytestmark = pytest.mark.anyio

BACK_OFFICE = "https://backoffice.partner.example"


@pytest.fixture
async def cors(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    async with service(make_settings(database_url, cors_allowed_origins=request.param)) as api:
        yield api


def _preflight(origin: str, method: str = "POST", headers: str = "authorization, content-type") -> dict:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_no_origin_is_allowed_by_default(api: Api) -> None:
    preflight = await api.client.options("/v1/installations", headers=_preflight(BACK_OFFICE))
    read = await api.get("/v1/installations", headers={**api.admin, "Origin": BACK_OFFICE})

    assert "access-control-allow-origin" not in preflight.headers
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


@pytest.mark.parametrize("cors", [[BACK_OFFICE]], indirect=True)
async def test_an_allowed_origin_is_answered_its_preflight_and_reads_the_answer(cors: Api) -> None:
    preflight = await cors.client.options(
        "/v1/installations", headers=_preflight(BACK_OFFICE, headers="authorization, content-type, idempotency-key")
    )
    listed = await cors.get("/v1/keys", params={"limit": 1}, headers={**cors.admin, "Origin": BACK_OFFICE})
    stranger = await cors.client.options("/v1/installations", headers=_preflight("https://evil.example"))

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == BACK_OFFICE
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "idempotency-key" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    assert listed.headers["access-control-allow-origin"] == BACK_OFFICE
    exposed = listed.headers["access-control-expose-headers"].lower()
    assert {"x-request-id", "link", "ratelimit", "retry-after"} <= {h.strip() for h in exposed.split(",")}
    assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers


@pytest.mark.parametrize("cors", [["*"]], indirect=True)
async def test_any_origin_may_be_allowed_but_never_with_credentials(cors: Api) -> None:
    preflight = await cors.client.options("/v1/installations", headers=_preflight("https://anywhere.example"))
    refused = await cors.get("/v1/installations", headers={"Origin": "https://anywhere.example"})

    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"
