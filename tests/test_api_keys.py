"""Keys: issued once in plaintext, listed by metadata only, revoked while unused."""

import pytest

from tests.api import Api

pytestmark = pytest.mark.anyio


async def test_issued_keys_are_shown_once_and_listed_without_the_key(api: Api) -> None:
    response = await api.post("/v1/keys", {"count": 3}, headers=api.admin)

    assert response.status_code == 201
    issued = response.json()["keys"]
    assert len({k["key"] for k in issued}) == 3
    assert all(k["key"].startswith(k["prefix"]) for k in issued)
    listing = await api.get("/v1/keys", headers=api.admin)
    assert sorted(k["key_id"] for k in listing.json()["items"]) == sorted(k["key_id"] for k in issued)
    assert all(k["key"] not in listing.text for k in issued)
    assert {k["status"] for k in listing.json()["items"]} == {"issued"}


async def test_keys_are_listed_by_status_page_by_page(api: Api) -> None:
    await api.installation("ACME")
    keys = await api.keys(5)
    await api.activate("ACME", keys[:1])

    used = (await api.get("/v1/keys", params={"status": "used"}, headers=api.admin)).json()
    first = (await api.get("/v1/keys", params={"status": "issued", "limit": 3}, headers=api.admin)).json()
    rest = (
        await api.get(
            "/v1/keys", params={"status": "issued", "limit": 3, "after": first["next_after"]}, headers=api.admin
        )
    ).json()

    assert len(used["items"]) == 1 and used["items"][0]["activation_id"] is not None
    assert len(first["items"]) == 3 and first["next_after"] is not None and first["has_more"] is True
    assert len(rest["items"]) == 1 and rest["next_after"] is None and rest["has_more"] is False


async def test_a_full_last_page_of_keys_promises_no_other(api: Api) -> None:
    await api.keys(3)

    page = (await api.get("/v1/keys", params={"limit": 3}, headers=api.admin)).json()

    assert (len(page["items"]), page["has_more"], page["next_after"]) == (3, False, None)


async def test_keys_can_be_issued_to_a_reseller(api: Api) -> None:
    reseller = await api.reseller()

    response = await api.post("/v1/keys", {"count": 2, "reseller_id": reseller["id"]}, headers=api.admin)

    assert response.json()["reseller_id"] == reseller["id"]
    listing = (await api.get("/v1/keys", headers=reseller["headers"])).json()
    assert len(listing["items"]) == 2


async def test_keys_for_an_unknown_reseller_are_refused(api: Api) -> None:
    response = await api.post(
        "/v1/keys", {"count": 1, "reseller_id": "00000000-0000-0000-0000-000000000001"}, headers=api.admin
    )

    assert (response.status_code, response.json()["code"]) == (404, "reseller_not_found")


async def test_revoking_an_unused_key_is_idempotent(api: Api) -> None:
    [issued] = (await api.post("/v1/keys", {"count": 1}, headers=api.admin)).json()["keys"]

    first = await api.post(f"/v1/keys/{issued['key_id']}/revoke", headers=api.admin)
    again = await api.post(f"/v1/keys/{issued['key_id']}/revoke", headers=api.admin)

    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == "revoked"
    assert again.json()["revoked_at"] == first.json()["revoked_at"]


async def test_a_used_key_cannot_be_revoked(api: Api) -> None:
    await api.installation("ACME")
    [issued] = (await api.post("/v1/keys", {"count": 1}, headers=api.admin)).json()["keys"]
    await api.activate("ACME", [issued["key"]])

    response = await api.post(f"/v1/keys/{issued['key_id']}/revoke", headers=api.admin)

    assert (response.status_code, response.json()["code"]) == (409, "key_already_used")


async def test_revoking_an_unknown_key_is_not_found(api: Api) -> None:
    response = await api.post("/v1/keys/00000000-0000-0000-0000-000000000001/revoke", headers=api.admin)

    assert (response.status_code, response.json()["code"]) == (404, "key_not_found")


async def test_an_unknown_key_among_good_ones_is_not_found(api: Api) -> None:
    from service import keyformat

    await api.installation("ACME")
    [good] = await api.keys(1)

    response = await api.activate("ACME", [good, keyformat.generate()])

    assert (response.status_code, response.json()["code"]) == (404, "key_not_found")
