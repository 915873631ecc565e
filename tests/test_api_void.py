"""Voiding an activation: it stays in the ledger, its keys are revoked, support is recomputed."""

from datetime import date

import pytest

from service import ledger
from tests.api import Api

pytestmark = pytest.mark.anyio


async def _void(api: Api, activation_id: str, reason: str = "refund"):
    return await api.post(f"/v1/activations/{activation_id}/void", {"reason": reason}, headers=api.admin)


async def test_voiding_a_middle_activation_refolds_later_bonuses(api: Api) -> None:
    """Lapsed on 2026-06-15, one key brought support back (to 2027-03-15); a second key on
    2026-12-01 earned the bonus only because of it. Voided, the second key is back-dated instead."""
    await api.installation("ACME", purchased_on="2025-03-15")
    first, second, third = await api.keys(3)
    api.stand_on(date(2026, 6, 15))
    voided = (await api.activate("ACME", [first])).json()
    api.stand_on(date(2026, 12, 1))
    later = (await api.activate("ACME", [second])).json()
    assert (later["periods"][0]["bonus_months"], later["support_end_after"]) == (2, "2028-05-15")

    response = await _void(api, voided["activation_id"])

    assert response.status_code == 200
    assert response.json()["support_end"] == "2027-03-15"  # 12 + 12: the second key, back-dated
    support = await api.support("ACME")
    assert (support["support_end"], support["months_granted"], support["bonus_months"]) == ("2027-03-15", 24, 0)
    statuses = await api.key_statuses()
    assert sorted(statuses.values()) == ["issued", "revoked", "used"]
    history = (await api.get("/v1/installations/ACME", headers=api.admin)).json()["activations"]
    assert [(a["activation_id"], a["void_reason"]) for a in history] == [
        (voided["activation_id"], "refund"),
        (later["activation_id"], None),
    ]
    assert await ledger.verify(driver=api.driver) == []
    assert (await api.activate("ACME", [first])).json()["code"] == "key_revoked"
    assert (await api.activate("ACME", [third])).status_code == 201


async def test_voiding_twice_changes_nothing(api: Api) -> None:
    await api.installation("ACME")
    [key] = await api.keys(1)
    activation = (await api.activate("ACME", [key])).json()
    first = await _void(api, activation["activation_id"], "mistake")
    support = await api.support("ACME")

    again = await _void(api, activation["activation_id"], "another reason")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert await api.support("ACME") == support


async def test_voiding_is_for_admins_and_needs_a_known_activation(api: Api) -> None:
    reseller = await api.reseller()
    unknown = await _void(api, "00000000-0000-0000-0000-000000000001")
    by_reseller = await api.post(
        "/v1/activations/00000000-0000-0000-0000-000000000001/void", {"reason": "x"}, headers=reseller["headers"]
    )

    assert (unknown.status_code, unknown.json()["code"]) == (404, "activation_not_found")
    assert (by_reseller.status_code, by_reseller.json()["code"]) == (403, "forbidden")


async def test_verify_reports_an_installation_that_drifted_from_its_ledger(api: Api) -> None:
    from sqlalchemy import update

    from service.models import Installation

    await api.installation("ACME")
    await api.installation("FINE")
    async with api.engine.begin() as conn:
        await conn.execute(update(Installation).where(Installation.code == "ACME").values(months=13))

    [drift] = await ledger.verify(driver=api.driver)

    assert (drift.code, drift.stored.months, drift.ledger.months) == ("ACME", 13, 12)


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    assert (await api.get("/readyz")).json() == {"status": "ready", "rate_limits": "memory"}
