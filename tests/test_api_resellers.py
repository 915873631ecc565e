"""Admins manage resellers: read one, disable and enable it, rotate its client secret. A disabled
reseller, or a token from before a rotation, is locked out at once, not when its tokens expire."""

import uuid
from datetime import datetime, timedelta

import pytest

from tests.api import Api

pytestmark = pytest.mark.anyio

REPRESENTATION = {"id", "name", "client_id", "disabled_at", "created_at", "previous_secret_until"}


async def _token(api: Api, client_id: str, client_secret: str):
    return await api.client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
    )


async def _login(api: Api, reseller: dict, secret: str | None = None) -> dict:
    response = await _token(api, reseller["client_id"], secret or reseller["client_secret"])
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _own_keys(api: Api, headers: dict):
    """An authenticated call any reseller may make."""
    return await api.get("/v1/keys", headers=headers)


async def test_an_admin_reads_a_reseller_without_its_secret(api: Api) -> None:
    reseller = await api.reseller("Partner")

    response = await api.get(f"/v1/resellers/{reseller['id']}", headers=api.admin)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == REPRESENTATION
    assert (body["id"], body["name"], body["client_id"], body["disabled_at"]) == (
        reseller["id"],
        "Partner",
        reseller["client_id"],
        None,
    )


async def test_a_disabled_resellers_tokens_stop_working_at_once(api: Api) -> None:
    reseller = await api.reseller()
    headers = await _login(api, reseller)
    assert (await _own_keys(api, headers)).status_code == 200

    disabled = await api.post(f"/v1/resellers/{reseller['id']}/disable", headers=api.admin)
    refused = await _own_keys(api, headers)
    registering = await api.post("/v1/installations", {"code": "X", "purchased_on": "2026-11-20"}, headers=headers)

    assert disabled.status_code == 200
    assert set(disabled.json()) == REPRESENTATION and disabled.json()["disabled_at"] is not None
    assert (refused.status_code, refused.json()["code"]) == (401, "unauthenticated")
    assert refused.headers["www-authenticate"] == "Bearer"
    assert (registering.status_code, registering.json()["code"]) == (401, "unauthenticated")


async def test_a_disabled_reseller_gets_no_token_and_is_told_no_more_than_for_a_wrong_secret(api: Api) -> None:
    reseller = await api.reseller()
    await api.post(f"/v1/resellers/{reseller['id']}/disable", headers=api.admin)

    disabled = await _token(api, reseller["client_id"], reseller["client_secret"])
    wrong = await _token(api, reseller["client_id"], "guess")

    assert (disabled.status_code, disabled.json()) == (401, wrong.json())


async def test_disabling_twice_keeps_the_first_instant(api: Api) -> None:
    reseller = await api.reseller()

    first = (await api.post(f"/v1/resellers/{reseller['id']}/disable", headers=api.admin)).json()
    second = (await api.post(f"/v1/resellers/{reseller['id']}/disable", headers=api.admin)).json()

    assert second["disabled_at"] == first["disabled_at"]


async def test_an_enabled_reseller_works_again(api: Api) -> None:
    reseller = await api.reseller()
    headers = await _login(api, reseller)
    await api.post(f"/v1/resellers/{reseller['id']}/disable", headers=api.admin)

    enabled = await api.post(f"/v1/resellers/{reseller['id']}/enable", headers=api.admin)

    assert (enabled.status_code, enabled.json()["disabled_at"]) == (200, None)
    assert (await _own_keys(api, headers)).status_code == 200
    assert (await _own_keys(api, await _login(api, reseller))).status_code == 200


async def test_a_rotated_secret_replaces_the_old_one_and_its_tokens_at_once(api: Api) -> None:
    """Tokens from before the rotation are refused even when issued in the same second as it (`iat`
    counts whole seconds); a token from the new secret works at once."""
    reseller = await api.reseller()
    old_headers = await _login(api, reseller)

    rotated = await api.post(f"/v1/resellers/{reseller['id']}/rotate-secret", headers=api.admin)
    new_secret = rotated.json()["client_secret"]
    old_secret = await _token(api, reseller["client_id"], reseller["client_secret"])
    new_headers = await _login(api, reseller, new_secret)

    assert rotated.status_code == 200
    assert set(rotated.json()) == REPRESENTATION | {"client_secret"}
    assert new_secret != reseller["client_secret"]
    assert (old_secret.status_code, old_secret.json()["error"]) == (401, "invalid_client")
    old_token = await _own_keys(api, old_headers)
    assert (old_token.status_code, old_token.json()["code"]) == (401, "unauthenticated")
    assert (await _own_keys(api, new_headers)).status_code == 200


async def test_a_rotated_secret_is_never_shown_again(api: Api) -> None:
    reseller = await api.reseller()
    rotated = (await api.post(f"/v1/resellers/{reseller['id']}/rotate-secret", headers=api.admin)).json()

    read = (await api.get(f"/v1/resellers/{reseller['id']}", headers=api.admin)).json()

    assert rotated["client_secret"] not in str(read)
    assert read == {k: v for k, v in rotated.items() if k != "client_secret"}


async def test_a_token_of_a_reseller_that_does_not_exist_is_unauthenticated(api: Api) -> None:
    headers = api.headers_for("reseller", str(uuid.uuid4()))

    response = await _own_keys(api, headers)

    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")


@pytest.mark.parametrize(
    ("method", "action"), [("GET", ""), ("POST", "/disable"), ("POST", "/enable"), ("POST", "/rotate-secret")]
)
async def test_an_unknown_reseller_is_not_found(api: Api, method: str, action: str) -> None:
    response = await api.client.request(method, f"/v1/resellers/{uuid.uuid4()}{action}", headers=api.admin)

    assert (response.status_code, response.json()["code"]) == (404, "reseller_not_found")


@pytest.mark.parametrize(
    ("method", "action"), [("GET", ""), ("POST", "/disable"), ("POST", "/enable"), ("POST", "/rotate-secret")]
)
async def test_only_an_admin_manages_resellers(api: Api, method: str, action: str) -> None:
    """Not even a reseller's own record: it could enable itself or take a secret it was denied."""
    reseller = await api.reseller()
    headers = await _login(api, reseller)

    response = await api.client.request(method, f"/v1/resellers/{reseller['id']}{action}", headers=headers)
    anonymous = await api.client.request(method, f"/v1/resellers/{reseller['id']}{action}")

    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")


async def test_a_rotation_with_a_grace_period_lets_the_old_secret_log_in_until_it_ends(api: Api) -> None:
    """A reseller with several servers rolls the new secret out meanwhile: old and new both log in, and the
    tokens already issued keep working; once the grace period is over only the new secret does."""
    reseller = await api.reseller()
    old_headers = await _login(api, reseller)
    before = api.clock.now()
    rotated = await api.post(
        f"/v1/resellers/{reseller['id']}/rotate-secret", {"grace_seconds": 3600}, headers=api.admin
    )
    new_secret = rotated.json()["client_secret"]
    ends = datetime.fromisoformat(rotated.json()["previous_secret_until"])

    read = (await api.get(f"/v1/resellers/{reseller['id']}", headers=api.admin)).json()
    during_old = await _token(api, reseller["client_id"], reseller["client_secret"])
    during_new = await _token(api, reseller["client_id"], new_secret)
    old_token = await _own_keys(api, old_headers)
    api.shift_instants(timedelta(seconds=3601))
    after_old = await _token(api, reseller["client_id"], reseller["client_secret"])
    after_new = await _token(api, reseller["client_id"], new_secret)

    assert rotated.status_code == 200
    assert timedelta(seconds=3600) <= ends - before < timedelta(seconds=3660)
    assert datetime.fromisoformat(read["previous_secret_until"]) == ends
    assert (during_old.status_code, during_new.status_code, old_token.status_code) == (200, 200, 200)
    assert (after_old.status_code, after_old.json()["error"]) == (401, "invalid_client")
    assert after_new.status_code == 200


async def test_a_rotation_without_grace_ends_the_one_before_it_at_once(api: Api) -> None:
    reseller = await api.reseller()
    first = await api.post(f"/v1/resellers/{reseller['id']}/rotate-secret", {"grace_seconds": 3600}, headers=api.admin)

    second = await api.post(f"/v1/resellers/{reseller['id']}/rotate-secret", headers=api.admin)

    assert second.json()["previous_secret_until"] is None
    for secret in (reseller["client_secret"], first.json()["client_secret"]):
        refused = await _token(api, reseller["client_id"], secret)
        assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    assert (await _token(api, reseller["client_id"], second.json()["client_secret"])).status_code == 200


@pytest.mark.parametrize("grace", [-1, 30 * 24 * 3600 + 1, "60", 1.5])
async def test_a_grace_period_is_0_to_30_days_in_whole_seconds(api: Api, grace: object) -> None:
    reseller = await api.reseller()

    refused = await api.post(
        f"/v1/resellers/{reseller['id']}/rotate-secret", {"grace_seconds": grace}, headers=api.admin
    )

    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_request")
    assert (await _token(api, reseller["client_id"], reseller["client_secret"])).status_code == 200
