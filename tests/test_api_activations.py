"""POST /v1/activations: the keys are the credential; atomic, replay-safe, R4–R6 and R10."""

from datetime import date

import pytest

from service import keyformat
from service.settings import Settings
from tests.api import Api
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[False, True], ids=["prepared", "planned each time"])
def settings(database_url: str, request: pytest.FixtureRequest) -> Settings:
    """Every rule both ways the service writes an activation: its prepared statement, and (as behind a
    transaction-mode pooler, where nothing is prepared) the database's function that mirrors it."""
    return make_settings(database_url, database_transaction_pooler=request.param)


async def test_activating_one_key_before_the_end_renews_with_the_bonus(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-03-15")
    [key] = await api.keys(1)
    api.stand_on(date(2026, 1, 10))

    response = await api.activate("ACME", [key])

    assert response.status_code == 201
    body = response.json()
    assert body["installation"] == "ACME"
    assert body["activated_on"] == "2026-01-10"
    assert body["support_end_before"] == "2026-03-15"
    assert body["support_end_after"] == "2027-05-15"
    assert body["months_added"] == 14
    [license_] = body["periods"]
    assert (license_["from"], license_["to"], license_["bonus_months"]) == ("2026-03-16", "2027-05-15", 2)
    support = await api.support("ACME")
    assert (support["support_end"], support["months_granted"], support["bonus_months"]) == ("2027-05-15", 26, 2)


async def test_keys_are_accepted_as_a_person_types_them(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-03-15")
    [key] = await api.keys(1)
    typed = " " + key.lower().replace("-", " ").replace("0", "o").replace("1", "l") + " "

    response = await api.activate("ACME", [typed])

    assert response.status_code == 201


async def test_two_keys_after_a_lapse_back_date_then_earn_the_bonus(api: Api) -> None:
    """R5: lapsed 3 months, 2 keys: +12 back-dated, then +14."""
    await api.installation("ACME", purchased_on="2025-03-15")
    keys = await api.keys(2)
    api.stand_on(date(2026, 6, 15))

    body = (await api.activate("ACME", keys)).json()

    assert body["months_added"] == 26
    assert body["support_end_after"] == "2028-05-15"
    assert [(p["from"], p["to"], p["bonus_months"]) for p in body["periods"]] == [
        ("2026-03-16", "2027-03-15", 0),
        ("2027-03-16", "2028-05-15", 2),
    ]


async def test_a_replay_returns_the_first_result_and_changes_nothing(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-03-15")
    keys = await api.keys(2)
    first = await api.activate("ACME", keys)
    api.stand_on(date(2027, 1, 1))

    again = await api.activate("ACME", list(reversed(keys)))

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert (await api.support("ACME"))["months_granted"] == 12 + 12 + 14


async def test_too_few_keys_for_a_long_lapse_are_refused_with_the_quote(api: Api) -> None:
    """R6: lapsed more than a year, one key is not enough; nothing is used."""
    await api.installation("ACME", purchased_on="2025-03-15")
    [key] = await api.keys(1)
    api.stand_on(date(2027, 3, 16))

    response = await api.activate("ACME", [key])

    assert response.status_code == 402
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "licenses_insufficient"
    assert problem["quote"]["licenses_required"] == 2
    assert problem["quote"]["missed_years"] == 1
    assert problem["quote"]["total"] == {"amount": "24000.00", "currency": "RUB"}
    assert problem["quote"]["licenses"] == 2
    assert list((await api.key_statuses()).values()) == ["issued"]


async def test_a_key_used_by_another_installation_is_refused(api: Api) -> None:
    await api.installation("ONE")
    await api.installation("TWO")
    [key] = await api.keys(1)
    assert (await api.activate("ONE", [key])).status_code == 201

    response = await api.activate("TWO", [key])

    assert response.status_code == 409
    assert response.json()["code"] == "key_already_used"


async def test_a_key_used_once_cannot_join_another_batch_on_the_same_installation(api: Api) -> None:
    await api.installation("ACME")
    first, second = await api.keys(2)
    assert (await api.activate("ACME", [first])).status_code == 201

    response = await api.activate("ACME", [first, second])

    assert response.status_code == 409
    assert response.json()["code"] == "key_already_used"


async def test_a_revoked_key_is_refused(api: Api) -> None:
    await api.installation("ACME")
    response = await api.post("/v1/keys", {"count": 1}, headers=api.admin)
    issued = response.json()["keys"][0]
    await api.post(f"/v1/keys/{issued['key_id']}/revoke", headers=api.admin)

    response = await api.activate("ACME", [issued["key"]])

    assert response.status_code == 409
    assert response.json()["code"] == "key_revoked"


async def test_the_same_key_twice_in_one_request_is_refused(api: Api) -> None:
    await api.installation("ACME")
    [key] = await api.keys(1)

    response = await api.activate("ACME", [key, key.lower()])

    assert response.status_code == 409
    assert response.json()["code"] == "key_duplicated"


async def test_a_mistyped_key_is_malformed_and_never_echoed(api: Api) -> None:
    await api.installation("ACME")
    [key] = await api.keys(1)
    typo = key[:-1] + ("0" if key[-1] != "0" else "1")

    response = await api.activate("ACME", [typo])

    assert response.status_code == 422
    assert response.json()["code"] == "key_malformed"
    assert typo not in response.text and key not in response.text


async def test_an_unknown_installation_is_not_found(api: Api) -> None:
    [key] = await api.keys(1)

    response = await api.activate("NOPE", [key])

    assert response.status_code == 404
    assert response.json()["code"] == "installation_not_found"


@pytest.mark.parametrize(
    ("bad", "status", "code"),
    [
        ("revoked", 409, "key_revoked"),
        ("duplicated", 409, "key_duplicated"),
        ("unknown", 404, "key_not_found"),
        ("insufficient", 402, "licenses_insufficient"),
    ],
)
async def test_a_refused_activation_leaves_every_key_and_the_installation_as_they_were(
    api: Api, bad: str, status: int, code: str
) -> None:
    await api.installation("ACME", purchased_on="2025-03-15")
    issued = (await api.post("/v1/keys", {"count": 3}, headers=api.admin)).json()["keys"]
    keys = [k["key"] for k in issued]
    if bad == "revoked":
        await api.post(f"/v1/keys/{issued[2]['key_id']}/revoke", headers=api.admin)
    elif bad == "duplicated":
        keys[2] = keys[0]
    elif bad == "unknown":
        keys[2] = keyformat.generate()  # well-formed, never issued
    elif bad == "insufficient":
        keys = keys[:1]
        api.stand_on(date(2030, 1, 1))
    statuses_before = await api.key_statuses()
    support_before = await api.support("ACME")

    response = await api.activate("ACME", keys)

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert await api.key_statuses() == statuses_before
    assert await api.support("ACME") == support_before
    installation = (await api.get("/v1/installations/ACME", headers=api.admin)).json()
    assert installation["activations"] == []


async def test_one_to_fifty_keys_per_request(api: Api) -> None:
    await api.installation("ACME")
    [key] = await api.keys(1)

    none = await api.activate("ACME", [])
    too_many = await api.activate("ACME", [key] * 51)

    assert (none.status_code, none.json()["code"]) == (400, "invalid_request")
    assert (too_many.status_code, too_many.json()["code"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("bad", "status", "code"),
    [
        ("used", 409, "key_already_used"),
        ("revoked", 409, "key_revoked"),
        ("duplicated", 409, "key_duplicated"),
        ("unknown", 404, "key_not_found"),
        ("mistyped", 422, "key_malformed"),
    ],
)
async def test_a_refusal_of_one_key_of_many_names_it_by_position_and_prefix(
    api: Api, bad: str, status: int, code: str
) -> None:
    await api.installation("ACME", purchased_on="2025-03-15")
    await api.installation("OTHER")
    issued = (await api.post("/v1/keys", {"count": 4}, headers=api.admin)).json()["keys"]
    keys = [k["key"] for k in issued]
    if bad == "used":
        assert (await api.activate("OTHER", [keys[2]])).status_code == 201
    elif bad == "revoked":
        await api.post(f"/v1/keys/{issued[2]['key_id']}/revoke", headers=api.admin)
    elif bad == "duplicated":
        keys[2] = keys[0].lower()
    elif bad == "unknown":
        keys[2] = keyformat.generate()
    elif bad == "mistyped":
        keys[2] = keys[2][:-1] + ("0" if keys[2][-1] != "0" else "1")

    response = await api.activate("ACME", keys)

    problem = response.json()
    assert (response.status_code, problem["code"], problem["key_index"]) == (status, code, 2)
    if bad == "mistyped":
        assert "key_prefix" not in problem  # not a key: nothing of it is echoed
    else:
        assert problem["key_prefix"] == keys[2][:8].upper() and len(problem["key_prefix"]) == 8
    assert all(key not in response.text and key.replace("-", "") not in response.text for key in keys)
