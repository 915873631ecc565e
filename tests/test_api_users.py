"""Cabinet users through the API (admins): invited with a one-time setup link, listed, disabled and enabled, and
every such action in the audit log."""

import logging
from datetime import datetime, timedelta

import httpx
import pytest

from tests.api import Api
from tests.cabinet import PASSWORD, Visitor, enroll_totp, invite, signed_in_user

pytestmark = pytest.mark.anyio


async def test_an_invitation_answers_the_user_and_a_setup_link_good_for_72_hours(api: Api) -> None:
    reseller = await api.reseller()

    response = await api.post(
        "/v1/users", {"username": "Anna", "role": "reseller", "reseller_id": reseller["id"]}, headers=api.admin
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["username"], body["role"], body["reseller_id"], body["password_set"]) == (
        "anna",
        "reseller",
        reseller["id"],
        False,
    )
    assert body["setup_url"].startswith("http://testserver/cabinet/setup/")
    expires = datetime.fromisoformat(body["setup_expires_at"])
    assert abs(expires - (api.clock.now() + timedelta(hours=72))) < timedelta(minutes=1)


async def test_the_setup_link_is_on_cabinet_url_when_it_is_set(api: Api) -> None:
    api.settings.cabinet_url = "https://licensing.example.com/"
    body = await invite(api, "boss")
    assert body["setup_url"].startswith("https://licensing.example.com/cabinet/setup/")


async def test_a_setup_link_sets_a_password_once(api: Api) -> None:
    user = await invite(api, "boss")
    async with Visitor.of(api) as visitor:
        assert (await visitor.set_password(user["setup_url"], PASSWORD)).status_code == 303
        again = await visitor.set_password(user["setup_url"], "another long password")
    assert again.status_code == 404
    listed = (await api.get("/v1/users", headers=api.admin)).json()["items"]
    assert [(u["username"], u["password_set"]) for u in listed] == [("boss", True)]


async def test_an_expired_setup_link_sets_nothing(api: Api) -> None:
    user = await invite(api, "boss")
    api.shift_instants(timedelta(hours=72, seconds=1))
    async with Visitor.of(api) as visitor:
        response = await visitor.get(httpx.URL(user["setup_url"]).path)
    assert response.status_code == 404
    assert "Ссылка недействительна" in response.text  # in Russian, the pages' default


async def test_invitations_are_refused_for_what_does_not_fit(api: Api) -> None:
    reseller = await api.reseller()
    await invite(api, "anna", "reseller", reseller["id"])
    cases = [
        ({"username": "anna", "role": "admin"}, api.admin, 409, "user_exists"),
        ({"username": "bob", "role": "reseller"}, api.admin, 400, "invalid_request"),
        ({"username": "bob", "role": "admin", "reseller_id": reseller["id"]}, api.admin, 400, "invalid_request"),
        ({"username": "b", "role": "admin"}, api.admin, 400, "invalid_request"),
        ({"username": "bob", "role": "owner"}, api.admin, 400, "invalid_request"),
        (
            {"username": "bob", "role": "reseller", "reseller_id": "7a1d2c3b-4e5f-4a6b-8c9d-0e1f2a3b4c5d"},
            api.admin,
            404,
            "reseller_not_found",
        ),
        ({"username": "bob", "role": "admin"}, reseller["headers"], 403, "forbidden"),
        ({"username": "bob", "role": "admin"}, {}, 401, "unauthenticated"),
    ]
    for body, headers, status, code in cases:
        response = await api.post("/v1/users", body, headers=headers)
        assert (response.status_code, response.json()["code"]) == (status, code), body


async def test_disabling_a_user_ends_its_open_session_at_once_and_enabling_lets_it_sign_in_again(api: Api) -> None:
    async with Visitor.of(api) as visitor:
        user = await signed_in_user(api, visitor, "boss")
        assert (await visitor.get("/cabinet/")).status_code == 200

        disabled = await api.post(f"/v1/users/{user['id']}/disable", headers=api.admin)
        assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None
        refused = await visitor.get("/cabinet/")
        assert (refused.status_code, refused.headers["location"]) == (303, "/cabinet/login")
        assert (await visitor.sign_in("boss", PASSWORD)).status_code == 401

        assert (await api.post(f"/v1/users/{user['id']}/enable", headers=api.admin)).status_code == 200
        assert (await visitor.sign_in("boss", PASSWORD)).status_code == 303


async def test_disabling_a_reseller_refuses_its_users_sessions_at_once(api: Api) -> None:
    reseller = await api.reseller()
    async with Visitor.of(api) as visitor:
        await signed_in_user(api, visitor, "anna", "reseller", reseller["id"])
        assert (await visitor.get("/cabinet/")).status_code == 200
        assert (await api.post(f"/v1/resellers/{reseller['id']}/disable", headers=api.admin)).status_code == 200
        assert (await visitor.get("/cabinet/")).status_code == 303


async def test_an_unknown_user_is_not_found(api: Api) -> None:
    response = await api.post("/v1/users/7a1d2c3b-4e5f-4a6b-8c9d-0e1f2a3b4c5d/disable", headers=api.admin)
    assert (response.status_code, response.json()["code"]) == (404, "user_not_found")


async def test_the_audit_log_names_who_invited_and_disabled_and_who_set_a_password(api: Api) -> None:
    user = await invite(api, "boss")
    async with Visitor.of(api, address="203.0.113.7") as visitor:
        await visitor.set_password(user["setup_url"], PASSWORD)
        await visitor.sign_in("boss", PASSWORD)
    await api.post(f"/v1/users/{user['id']}/disable", headers=api.admin)

    response = await api.get("/v1/audit-events", headers=api.admin)

    assert response.status_code == 200
    events = [(e["actor"], e["action"], e["target"], e["address"]) for e in reversed(response.json()["items"])]
    assert events == [
        ("token:test-admin", "user.invited", "boss", "127.0.0.1"),
        ("boss", "user.password_set", "boss", "203.0.113.7"),
        ("boss", "session.signed_in", None, "203.0.113.7"),
        ("token:test-admin", "user.disabled", "boss", "127.0.0.1"),
    ]


async def test_the_audit_log_is_for_admins_and_pages_backwards(api: Api) -> None:
    reseller = await api.reseller()
    for number in range(3):
        await invite(api, f"user{number}")
    assert (await api.get("/v1/audit-events", headers=reseller["headers"])).status_code == 403

    first = (await api.get("/v1/audit-events", params={"limit": 2}, headers=api.admin)).json()
    second = (
        await api.get("/v1/audit-events", params={"limit": 2, "before": first["next_before"]}, headers=api.admin)
    ).json()

    assert [e["target"] for e in first["items"]] == ["user2", "user1"] and first["has_more"]
    assert [e["target"] for e in second["items"]] == ["user0"] and not second["has_more"]


async def test_a_setup_link_never_reaches_the_access_log(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="service.access")
    user = await invite(api, "boss")
    token = httpx.URL(user["setup_url"]).path.rsplit("/", 1)[1]
    async with Visitor.of(api) as visitor:
        await visitor.set_password(user["setup_url"], PASSWORD)

    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "service.access")
    assert "/cabinet/setup/" in logged and token not in logged


async def test_users_are_listed_admins_first_or_one_resellers_only(api: Api) -> None:
    first, second = await api.reseller("First"), await api.reseller("Second")
    await invite(api, "zed", "reseller", first["id"])
    await invite(api, "amy", "reseller", second["id"])
    await invite(api, "boss")

    everyone = (await api.get("/v1/users", headers=api.admin)).json()["items"]
    theirs = (await api.get("/v1/users", params={"reseller_id": second["id"]}, headers=api.admin)).json()["items"]

    assert [u["username"] for u in everyone] == ["boss", "amy", "zed"]
    assert [u["username"] for u in theirs] == ["amy"]


async def test_disabling_a_user_again_keeps_the_first_instant(api: Api) -> None:
    user = await invite(api, "boss")
    first = (await api.post(f"/v1/users/{user['id']}/disable", headers=api.admin)).json()["disabled_at"]
    api.shift_instants(timedelta(minutes=5))
    again = (await api.post(f"/v1/users/{user['id']}/disable", headers=api.admin)).json()["disabled_at"]
    assert again == first


async def test_resetting_a_users_two_step_sign_in_ends_its_sessions_and_it_sets_it_up_again(api: Api) -> None:
    api.settings.cabinet_admin_totp = True
    reseller = await api.reseller()
    async with Visitor.of(api) as visitor:
        user = await signed_in_user(api, visitor, "boss")
        await enroll_totp(api, visitor)
        refused = await api.post(f"/v1/users/{user['id']}/reset-totp", headers=reseller["headers"])
        reset = await api.post(f"/v1/users/{user['id']}/reset-totp", headers=api.admin)
        ended = await visitor.get("/cabinet/")
        without_code = await visitor.sign_in("boss", PASSWORD)
        held = await visitor.get("/cabinet/keys")
    unknown = await api.post("/v1/users/7a1d2c3b-4e5f-4a6b-8c9d-0e1f2a3b4c5d/reset-totp", headers=api.admin)

    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert reset.status_code == 200 and reset.json()["totp_enabled"] is False
    assert (ended.status_code, ended.headers["location"]) == (303, "/cabinet/login")
    assert without_code.status_code == 303
    assert (held.status_code, held.headers["location"]) == (303, "/cabinet/totp")  # an admin sets it up again
    assert (unknown.status_code, unknown.json()["code"]) == (404, "user_not_found")
    last = (await api.get("/v1/audit-events", headers=api.admin)).json()["items"]
    assert ("token:test-admin", "user.totp_reset", "boss") in [(e["actor"], e["action"], e["target"]) for e in last]
