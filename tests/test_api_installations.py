"""Installations, the public support state and renewal quotes."""

from datetime import date

import pytest
from jose import jwt

from service.db import create_engine
from tests.api import Api
from tests.conftest import empty_tables, make_settings

pytestmark = pytest.mark.anyio


async def test_a_new_sale_starts_with_a_year_of_support(api: Api) -> None:
    created = await api.installation("ACME", purchased_on="2025-03-15")

    assert created["support_end"] == "2026-03-15"
    assert created["months_granted"] == 12


async def test_an_existing_customer_keeps_its_support_end(api: Api) -> None:
    created = await api.installation("ACME", support_end="2026-12-31")

    assert (created["anchor"], created["support_end"], created["months_granted"]) == ("2026-12-31", "2026-12-31", 0)


async def test_a_purchase_in_the_future_is_refused(api: Api) -> None:
    response = await api.post("/v1/installations", {"code": "ACME", "purchased_on": "2026-11-25"}, headers=api.admin)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


async def test_only_an_admin_moves_an_existing_customer_in(api: Api) -> None:
    """A known support end is taken on trust: a reseller naming one could hand out years of support."""
    reseller = await api.reseller()

    response = await api.post(
        "/v1/installations", {"code": "ACME", "support_end": "2100-12-31"}, headers=reseller["headers"]
    )

    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    assert (await api.get("/v1/installations/ACME/support")).status_code == 404


async def test_a_reseller_registers_a_sale_of_the_last_30_days(api: Api) -> None:
    reseller = await api.reseller()

    created = await api.installation("ACME", headers=reseller["headers"], purchased_on="2026-10-25")

    assert (created["anchor"], created["support_end"]) == ("2026-10-25", "2027-10-25")


async def test_a_reseller_cannot_register_an_older_sale(api: Api) -> None:
    """Today is 2026-11-24: a sale of 31 days ago would start a fresh year from an old date."""
    reseller = await api.reseller()

    response = await api.post(
        "/v1/installations", {"code": "ACME", "purchased_on": "2026-10-24"}, headers=reseller["headers"]
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert response.json()["detail"] == (
        "The purchase date 2026-10-24 is more than 30 days before today (2026-11-24); ask an administrator"
    )


async def test_an_admin_registers_a_sale_of_any_date(api: Api) -> None:
    created = await api.installation("ACME", purchased_on="2020-01-31")

    assert created["support_end"] == "2021-01-31"


async def test_the_age_of_a_sale_a_reseller_may_register_is_a_setting(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with Api.started(
            make_settings(database_url, purchase_max_age_days=7), engine, today=date(2026, 11, 24)
        ) as api:
            reseller = await api.reseller()
            headers = reseller["headers"]
            week = await api.post("/v1/installations", {"code": "A", "purchased_on": "2026-11-17"}, headers=headers)
            older = await api.post("/v1/installations", {"code": "B", "purchased_on": "2026-11-16"}, headers=headers)
    finally:
        await empty_tables(engine)
        await engine.dispose()

    assert week.status_code == 201
    assert (older.status_code, older.json()["code"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {"code": "ACME"},
        {"code": "ACME", "purchased_on": "2025-01-01", "support_end": "2026-01-01"},
        {"code": "ACME", "purchased_on": "1900-01-01"},
        {"code": "bad code!", "purchased_on": "2025-01-01"},
        {"code": "ACME", "purchased_on": "2025-01-01", "colour": "blue"},
        {"code": "ACME", "purchased_on": "not a date"},
    ],
)
async def test_a_malformed_registration_is_an_invalid_request(api: Api, body: dict) -> None:
    response = await api.post("/v1/installations", body, headers=api.admin)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_request"


async def test_malformed_json_is_an_invalid_request(api: Api) -> None:
    response = await api.client.post(
        "/v1/installations", content=b"{not json", headers={**api.admin, "Content-Type": "application/json"}
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


async def test_a_code_is_registered_once(api: Api) -> None:
    await api.installation("ACME")

    response = await api.post("/v1/installations", {"code": "ACME", "purchased_on": "2025-01-01"}, headers=api.admin)

    assert (response.status_code, response.json()["code"]) == (409, "installation_exists")


async def test_support_state_is_what_help_about_shows(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-03-15")
    [key] = await api.keys(1)
    api.stand_on(date(2026, 1, 10))
    await api.activate("ACME", [key])
    api.stand_on(date(2026, 11, 24))

    support = await api.support("ACME")

    assert support == {
        "code": "ACME",
        "support_end": "2027-05-15",
        "active": True,
        "as_of": "2026-11-24",
        "days_left": 172,
        "months_granted": 26,
        "bonus_months": 2,
        "entitlements": {"support_requests": True, "updates_released_through": "2027-05-15"},
    }


async def test_lapsed_support_has_no_days_left_but_keeps_its_updates(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-03-15")

    support = await api.support("ACME")

    assert (support["active"], support["days_left"]) == (False, 0)
    assert support["entitlements"] == {"support_requests": False, "updates_released_through": "2026-03-15"}


async def test_support_state_of_an_unknown_installation_is_not_found(api: Api) -> None:
    response = await api.get("/v1/installations/NOPE/support")

    assert (response.status_code, response.json()["code"]) == (404, "installation_not_found")


async def test_quote_prices_every_missed_year(api: Api) -> None:
    """The quote example of service/docs/api-contract.md: lapsed a year and a day, two licenses required."""
    await api.installation("ACME", purchased_on="2025-03-15")

    response = await api.get("/v1/installations/ACME/quote", params={"on": "2027-03-16"})

    assert response.status_code == 200
    assert response.json() == {
        "support_end": "2026-03-15",
        "on": "2027-03-16",
        "active": False,
        "licenses_required": 2,
        "missed_years": 1,
        "licenses": 2,
        "sufficient": True,
        "unit_price": {"amount": "12000.00", "currency": "RUB"},
        "total": {"amount": "24000.00", "currency": "RUB"},
        "support_end_after": "2028-03-15",
        "periods": [
            {"from": "2026-03-16", "to": "2027-03-15", "bonus_months": 0},
            {"from": "2027-03-16", "to": "2028-03-15", "bonus_months": 0},
        ],
    }


async def test_quote_defaults_to_today(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-11-24")

    quote = (await api.get("/v1/installations/ACME/quote")).json()

    assert (quote["on"], quote["active"], quote["licenses_required"]) == ("2026-11-24", True, 1)
    assert quote["support_end_after"] == "2028-01-24"


async def test_quoting_fewer_licenses_than_required_says_insufficient(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-03-15")

    quote = (await api.get("/v1/installations/ACME/quote", params={"on": "2027-03-16", "licenses": 1})).json()

    assert (quote["licenses"], quote["sufficient"], quote["total"]["amount"]) == (1, False, "12000.00")


async def test_a_customer_not_yet_registered_can_be_quoted_from_its_support_end(api: Api) -> None:
    response = await api.get("/v1/quote", params={"support_end": "2026-03-15", "on": "2027-03-16"})

    assert response.status_code == 200
    assert (response.json()["licenses_required"], response.json()["total"]["amount"]) == (2, "24000.00")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"support_end": "yesterday"},
        {"support_end": "2026-01-01", "licenses": 0},
        {"support_end": "2026-01-01", "on": "3000-01-01"},
    ],
)
async def test_a_bad_quote_query_is_an_invalid_request(api: Api, params: dict) -> None:
    response = await api.get("/v1/quote", params=params)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


async def test_an_installation_shows_its_activations(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-03-15")
    keys = await api.keys(2)
    activation = (await api.activate("ACME", keys)).json()

    installation = (await api.get("/v1/installations/ACME", headers=api.admin)).json()

    [entry] = installation["activations"]
    assert entry["activation_id"] == activation["activation_id"]
    assert entry["key_ids"] == [lic["key_id"] for lic in activation["periods"]]
    assert (entry["months_added"], entry["support_end_after"]) == (activation["months_added"], "2028-05-15")


async def test_a_reseller_reads_the_ids_of_its_own_keys_only_in_its_installations_ledger(api: Api) -> None:
    """As in the events it is sent: a key another reseller sold is counted, but its id is not the reseller's to
    know; an admin sees every id."""
    partner, other = await api.reseller("Partner"), await api.reseller("Other")
    await api.installation("ACME", purchased_on="2026-11-20", reseller_id=partner["id"])
    [own_key] = await api.keys(1, reseller_id=partner["id"])
    [sold_by_other] = await api.keys(1, reseller_id=other["id"])
    [operators] = await api.keys(1)
    activation = (await api.activate("ACME", [sold_by_other, own_key, operators])).json()
    every_id = [period["key_id"] for period in activation["periods"]]

    as_partner = (await api.get("/v1/installations/ACME", headers=partner["headers"])).json()
    listed = (await api.get("/v1/activations", headers=partner["headers"])).json()
    as_admin = (await api.get("/v1/installations/ACME", headers=api.admin)).json()

    assert as_partner["activations"][0]["key_ids"] == [None, every_id[1], None]
    assert listed["items"][0]["key_ids"] == [None, every_id[1], None]
    assert as_admin["activations"][0]["key_ids"] == every_id


async def test_an_oversized_body_is_refused_before_it_is_read(api: Api) -> None:
    body = b'{"code": "ACME", "purchased_on": "2025-01-01", "pad": "' + b"x" * 70_000 + b'"}'

    declared = await api.client.post(
        "/v1/installations", content=body, headers={**api.admin, "Content-Type": "application/json"}
    )

    async def chunks():
        for _ in range(10):
            yield b" " * 10_000

    streamed = await api.client.post(
        "/v1/installations", content=chunks(), headers={**api.admin, "Content-Type": "application/json"}
    )

    for response in (declared, streamed):
        assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")


async def test_an_installation_code_is_one_code_in_any_case(api: Api) -> None:
    """Stored upper-case; found by any spelling; the answers and certificates name the stored code."""
    created = await api.installation("look-001", purchased_on="2025-03-15")
    [key] = await api.keys(1)

    details = await api.get("/v1/installations/Look-001", headers=api.admin)
    support = (await api.get("/v1/installations/look-001/support")).json()
    quote = await api.get("/v1/installations/lOOk-001/quote")
    activation = (await api.activate("look-001", [key])).json()

    assert created["code"] == "LOOK-001"
    assert (details.status_code, details.json()["code"]) == (200, "LOOK-001")
    assert support["code"] == "LOOK-001"
    assert jwt.get_unverified_claims(support["certificate"])["sub"] == "LOOK-001"
    assert quote.status_code == 200
    assert activation["installation"] == "LOOK-001"
    assert jwt.get_unverified_claims(activation["certificate"])["sub"] == "LOOK-001"
    assert (await api.support("LOOK-001"))["support_end"] == activation["support_end_after"]


async def test_a_code_in_another_case_is_the_same_code(api: Api) -> None:
    await api.installation("LOOK-001")

    response = await api.post(
        "/v1/installations", {"code": "look-001", "purchased_on": "2025-01-01"}, headers=api.admin
    )

    assert (response.status_code, response.json()["code"]) == (409, "installation_exists")


@pytest.mark.parametrize("code", ["\u0131nst", "stra\u00dfe", "\u017fome"])
async def test_a_code_is_ascii_even_where_upper_case_would_make_it_so(api: Api, code: str) -> None:
    """ "ı".upper() is "I", "ß".upper() is "SS", "ſ".upper() is "S": such codes are refused, not folded."""
    response = await api.post("/v1/installations", {"code": code, "purchased_on": "2025-01-01"}, headers=api.admin)
    support = await api.get(f"/v1/installations/{code}/support")

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert (support.status_code, support.json()["code"]) == (400, "invalid_request")
