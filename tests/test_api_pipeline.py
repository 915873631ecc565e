"""`GET /v1/installations`, the renewal pipeline: installations by support end, soonest first, each with where it
stands today and what renewing it today costs; filtered for the customers to call, a page at a time."""

from datetime import date

import pytest

from tests.api import Api

pytestmark = pytest.mark.anyio

TODAY = date(2026, 11, 24)  # where the `api` fixture stands


async def _list(api: Api, headers: dict | None = None, **params: object) -> dict:
    response = await api.get("/v1/installations", params=params, headers=headers or api.admin)
    assert response.status_code == 200, response.text
    return response.json()


def _codes(page: dict) -> list[str]:
    return [item["code"] for item in page["items"]]


async def test_installations_are_listed_by_support_end_with_days_left_state_and_todays_renewal(api: Api) -> None:
    await api.installation("LATER", support_end="2027-06-30")
    await api.installation("LAPSED", support_end="2026-11-23")
    await api.installation("LONG-LAPSED", support_end="2025-01-10")
    await api.installation("ENDS-TODAY", support_end="2026-11-24")

    page = await _list(api)

    assert _codes(page) == ["LONG-LAPSED", "LAPSED", "ENDS-TODAY", "LATER"]
    assert page["items"][0] == {
        "code": "LONG-LAPSED",
        "reseller_id": None,
        "support_end": "2025-01-10",
        "days_left": 0,
        "state": "lapsed",
        "licenses_required": 2,  # R7: the missed year, and this one
        "renewal_total": {"amount": "24000.00", "currency": "RUB"},
    }
    ends_today, later = page["items"][2:]
    assert (ends_today["days_left"], ends_today["state"], ends_today["licenses_required"]) == (0, "expiring", 1)
    assert (later["days_left"], later["state"]) == (218, "active")
    assert later["renewal_total"] == {"amount": "12000.00", "currency": "RUB"}
    assert (page["has_more"], page["next_cursor"]) == (False, None)


async def test_a_reseller_sees_its_own_installations_only(api: Api) -> None:
    mine, theirs = await api.reseller("Mine"), await api.reseller("Theirs")
    await api.installation("MINE-1", headers=mine["headers"], purchased_on="2026-11-01")
    await api.installation("THEIRS-1", headers=theirs["headers"], purchased_on="2026-11-01")
    await api.installation("HOUSE-1", purchased_on="2026-11-01")

    own = await _list(api, mine["headers"])
    another = await api.get("/v1/installations", params={"reseller_id": theirs["id"]}, headers=mine["headers"])
    admin_view = await _list(api, reseller_id=theirs["id"])

    assert _codes(own) == ["MINE-1"] and own["items"][0]["reseller_id"] == mine["id"]
    assert (another.status_code, another.json()["code"]) == (403, "forbidden")
    assert _codes(admin_view) == ["THEIRS-1"]
    assert len((await _list(api))["items"]) == 3


async def test_the_customers_to_call_are_those_whose_support_ends_within_the_days_given(api: Api) -> None:
    for code, end in [
        ("ENDED", "2026-11-23"),
        ("TODAY", "2026-11-24"),
        ("IN-60-DAYS", "2027-01-23"),
        ("IN-61-DAYS", "2027-01-24"),
    ]:
        await api.installation(code, support_end=end)

    expiring = await _list(api, state="expiring")
    within_a_week = await _list(api, state="expiring", expiring_within_days=7)
    lapsed = await _list(api, state="lapsed")
    active = await _list(api, state="active")

    assert _codes(expiring) == ["TODAY", "IN-60-DAYS"]
    assert {item["state"] for item in expiring["items"]} == {"expiring"}
    assert _codes(within_a_week) == ["TODAY"]
    assert _codes(lapsed) == ["ENDED"]
    assert _codes(active) == ["IN-61-DAYS"]


async def test_installations_are_filtered_by_support_end_and_code_prefix(api: Api) -> None:
    for code, end in [
        ("ACME-1", "2027-01-01"),
        ("ACME-2", "2027-02-01"),
        ("ACMEX", "2027-03-01"),
        ("ZED", "2027-02-15"),
    ]:
        await api.installation(code, support_end=end)
    await api.installation("AC_ME", support_end="2027-02-01")

    february = await _list(api, support_end_from="2027-02-01", support_end_to="2027-02-28")
    prefixed = await _list(api, code_prefix="acme-")
    underscore = await _list(api, code_prefix="AC_")
    both = await _list(api, code_prefix="ACME", support_end_to="2027-02-01", state="active")

    assert _codes(february) == ["ACME-2", "AC_ME", "ZED"], "one support end: in the order registered"
    assert _codes(prefixed) == ["ACME-1", "ACME-2"]
    assert _codes(underscore) == ["AC_ME"], "a prefix is taken literally: `_` is no wildcard"
    assert _codes(both) == ["ACME-2"], "ACME-1 ends within 60 days: expiring, not active"


async def test_pages_follow_one_another_without_gaps_or_repeats(api: Api) -> None:
    codes = [f"I{n}" for n in range(7)]
    for n, code in enumerate(codes):
        await api.installation(code, support_end=f"2027-0{1 + n // 3}-15")  # three share each support end

    pages, cursor = [], None
    while True:
        page = await _list(api, limit=3, **({"cursor": cursor} if cursor else {}))
        pages.append(page)
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]

    assert [len(page["items"]) for page in pages] == [3, 3, 1]
    assert [page["has_more"] for page in pages] == [True, True, False]
    assert pages[-1]["next_cursor"] is None
    assert sorted(code for page in pages for code in _codes(page)) == codes


async def test_a_full_last_page_says_there_is_no_more(api: Api) -> None:
    await api.installation("ONE", support_end="2027-01-01")
    await api.installation("TWO", support_end="2027-01-02")

    page = await _list(api, limit=2)

    assert (len(page["items"]), page["has_more"], page["next_cursor"]) == (2, False, None)


@pytest.mark.parametrize("cursor", ["not-a-cursor", "WyJ4Il0", "WyIyMDI3LTAxLTAxIiwieCJd"])
async def test_a_cursor_the_service_did_not_give_is_refused(api: Api, cursor: str) -> None:
    response = await api.get("/v1/installations", params={"cursor": cursor}, headers=api.admin)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


async def test_listing_is_for_admins_and_resellers(api: Api) -> None:
    response = await api.get("/v1/installations")

    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")


async def test_the_support_end_listed_follows_activations_and_voids(api: Api) -> None:
    await api.installation("ACME", purchased_on="2026-11-01")
    await api.installation("OTHER", support_end="2027-06-01")
    activation = await api.activate("ACME", await api.keys(1))

    renewed = await _list(api)
    await api.post(f"/v1/activations/{activation.json()['activation_id']}/void", {"reason": "x"}, headers=api.admin)
    voided = await _list(api)

    assert [(i["code"], i["support_end"]) for i in renewed["items"]] == [
        ("OTHER", "2027-06-01"),
        ("ACME", "2029-01-01"),
    ]
    assert [(i["code"], i["support_end"]) for i in voided["items"]] == [("OTHER", "2027-06-01"), ("ACME", "2027-11-01")]
