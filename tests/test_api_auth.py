"""Who may call what: admin tokens, reseller client credentials, reseller isolation."""

from datetime import timedelta

import pytest

from service.auth import TokenSettings
from tests.api import Api

pytestmark = pytest.mark.anyio


async def _token(api: Api, client_id: str, client_secret: str):
    return await api.client.post("/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})


async def test_a_reseller_trades_its_credentials_for_a_short_lived_token(api: Api) -> None:
    reseller = await api.reseller()

    response = await _token(api, reseller["client_id"], reseller["client_secret"])

    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 15 * 60
    created = await api.post("/v1/installations", {"code": "MINE", "purchased_on": "2025-01-01"},
                             headers={"Authorization": f"Bearer {token['access_token']}"})
    assert created.status_code == 201
    assert created.json()["reseller_id"] == reseller["id"]


async def test_a_wrong_client_secret_is_unauthenticated(api: Api) -> None:
    reseller = await api.reseller()

    wrong = await _token(api, reseller["client_id"], "guess")
    unknown = await _token(api, "rs_nobody", reseller["client_secret"])

    assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthenticated")
    assert (unknown.status_code, unknown.json()["code"]) == (401, "unauthenticated")


@pytest.mark.parametrize("case", ["missing", "expired", "other secret", "garbage"])
async def test_a_bad_token_is_unauthenticated(api: Api, case: str) -> None:
    headers = {
        "missing": {},
        "expired": api.headers_for("admin", "x", lifetime=timedelta(minutes=-1)),
        "other secret": api.headers_for("admin", "x", token_settings=TokenSettings(
            "another-secret", api.settings.jwt_issuer, api.settings.jwt_audience)),
        "garbage": {"Authorization": "Bearer not.a.token"},
    }[case]

    response = await api.post("/v1/keys", {"count": 1}, headers=headers)

    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/resellers", {"name": "Other"}),
    ("/v1/keys", {"count": 1}),
    ("/v1/keys/00000000-0000-0000-0000-000000000000/revoke", None),
])
async def test_a_reseller_cannot_call_admin_endpoints(api: Api, path: str, body: dict | None) -> None:
    reseller = await api.reseller()

    response = await api.client.request("POST", path, json=body, headers=reseller["headers"])

    assert (response.status_code, response.json()["code"]) == (403, "forbidden")


async def test_a_reseller_sees_only_its_own_installations_and_keys(api: Api) -> None:
    mine, theirs = await api.reseller("Mine"), await api.reseller("Theirs")
    await api.installation("THEIRS", headers=theirs["headers"])
    await api.keys(2, reseller_id=theirs["id"])
    await api.keys(1, reseller_id=mine["id"])

    installation = await api.get("/v1/installations/THEIRS", headers=mine["headers"])
    own_keys = await api.get("/v1/keys", headers=mine["headers"])
    their_keys = await api.get("/v1/keys", params={"reseller_id": theirs["id"]}, headers=mine["headers"])

    assert (installation.status_code, installation.json()["code"]) == (403, "forbidden")
    assert [k["reseller_id"] for k in own_keys.json()["items"]] == [mine["id"]]
    assert (their_keys.status_code, their_keys.json()["code"]) == (403, "forbidden")


async def test_a_reseller_registers_installations_for_itself_only(api: Api) -> None:
    mine, theirs = await api.reseller("Mine"), await api.reseller("Theirs")

    response = await api.post("/v1/installations", {"code": "X", "purchased_on": "2025-01-01",
                                                    "reseller_id": theirs["id"]}, headers=mine["headers"])

    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
