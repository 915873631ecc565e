"""Voiding an activation: it stays in the ledger, its keys are revoked, support is recomputed."""

import os
import subprocess
import sys
from datetime import date
from uuid import UUID

import pytest
from sqlalchemy import func, update

from service import ledger, rules
from service.models import Activation, Installation, SupportEnd
from tests.api import Api

pytestmark = pytest.mark.anyio


async def _void(api: Api, activation_id: str, reason: str = "refund", **options: object):
    return await api.post(f"/v1/activations/{activation_id}/void", {"reason": reason, **options}, headers=api.admin)


def _key_ids(activation: dict) -> list[str]:
    return [period["key_id"] for period in activation["periods"]]


ORIGIN = rules.Support(date(2024, 5, 25), 12)
"""The support of the installation sold on 2024-05-25 (R3)."""


async def _live_ledger_r6_refuses(api: Api, code: str) -> list[int]:
    """Where R6 would refuse an activation of the installation's live ledger, replayed from its sale (`ORIGIN`)."""
    details = (await api.get(f"/v1/installations/{code}", headers=api.admin)).json()
    live = [
        (date.fromisoformat(a["activated_on"]), a["licenses"]) for a in details["activations"] if not a["voided_at"]
    ]
    return rules.refused_in_fold(ORIGIN, live)


async def _lapsed_installation_with_two_activations(api: Api) -> tuple[dict, dict]:
    """Lapsed since 2025-05-25: activation A (2 keys) brings it back to 2027-05-25; B (1 key, early, so with the
    bonus) takes it to 2028-07-25. B was computed on A."""
    await api.installation("ACME", purchased_on=ORIGIN.anchor)
    keys = await api.keys(3)
    a = (await api.activate("ACME", keys[:2])).json()
    b = (await api.activate("ACME", keys[2:])).json()
    assert (a["support_end_after"], b["support_end_after"]) == ("2027-05-25", "2028-07-25")
    return a, b


async def test_voiding_an_activation_that_later_ones_were_computed_on_is_refused(api: Api) -> None:
    a, b = await _lapsed_installation_with_two_activations(api)
    before = await api.support("ACME")

    response = await _void(api, a["activation_id"])

    assert (response.status_code, response.json()["code"]) == (409, "void_has_dependents")
    assert response.json()["dependents"] == [b["activation_id"]]
    assert await api.support("ACME") == before
    assert sorted((await api.key_statuses()).values()) == ["used", "used", "used"]


async def test_a_cascading_void_voids_the_later_activations_newest_first(api: Api) -> None:
    """Voiding A alone would have back-dated B's key to 2026-05-25, leaving support lapsed: a state R6 never allows.
    With `cascade`, B goes too, and the installation is as it was before A."""
    a, b = await _lapsed_installation_with_two_activations(api)

    response = await _void(api, a["activation_id"], cascade=True)

    assert response.status_code == 200
    body = response.json()
    assert body["voided"] == [b["activation_id"], a["activation_id"]]
    assert sorted(body["revoked_keys"]) == sorted(_key_ids(a) + _key_ids(b))
    assert body["support_end"] == "2025-05-25"
    assert (await api.support("ACME"))["support_end"] == "2025-05-25"
    assert sorted((await api.key_statuses()).values()) == ["revoked", "revoked", "revoked"]
    assert await _live_ledger_r6_refuses(api, "ACME") == []
    assert await ledger.verify(driver=api.driver) == []


async def test_voiding_the_newest_activation_needs_no_cascade(api: Api) -> None:
    a, b = await _lapsed_installation_with_two_activations(api)

    response = await _void(api, b["activation_id"])

    assert response.status_code == 200
    assert (response.json()["voided"], response.json()["revoked_keys"]) == ([b["activation_id"]], _key_ids(b))
    assert (await api.support("ACME"))["support_end"] == a["support_end_after"]
    assert await _live_ledger_r6_refuses(api, "ACME") == []
    assert await ledger.verify(driver=api.driver) == []


async def test_voiding_twice_changes_nothing(api: Api) -> None:
    await api.installation("ACME")
    [key] = await api.keys(1)
    activation = (await api.activate("ACME", [key])).json()
    first = await _void(api, activation["activation_id"], "mistake")
    support = await api.support("ACME")

    again = await _void(api, activation["activation_id"], "another reason")

    assert again.status_code == 200
    assert again.json() == {**first.json(), "voided": [], "revoked_keys": []}
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
    await api.installation("ACME")
    await api.installation("FINE")
    async with api.engine.begin() as conn:
        await conn.execute(update(Installation).where(Installation.code == "ACME").values(months=13))

    [drift] = await ledger.verify(driver=api.driver)

    assert isinstance(drift, ledger.Drift)
    assert (drift.code, drift.stored.months, drift.ledger.months) == ("ACME", 13, 12)


async def test_verify_reports_a_live_activation_that_r6_would_have_refused(api: Api) -> None:
    """What a void of A alone used to leave: B, refolded from the lapsed support, back-dated and still lapsed."""
    a, b = await _lapsed_installation_with_two_activations(api)
    async with api.engine.begin() as conn:
        await conn.execute(
            update(Activation).where(Activation.id == UUID(a["activation_id"])).values(voided_at=func.now())
        )
        await conn.execute(update(Installation).where(Installation.code == "ACME").values(months=24, bonus_months=0))
        await conn.execute(update(SupportEnd).values(support_end=date(2026, 5, 25)))

    [impossible] = await ledger.verify(driver=api.driver)
    command = subprocess.run(
        [sys.executable, "-m", "service.cli", "verify"],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": api.settings.database_url},
        timeout=60,
    )

    assert isinstance(impossible, ledger.Impossible)
    assert (impossible.code, str(impossible.activation_id), str(impossible.activated_on)) == (
        "ACME",
        b["activation_id"],
        "2026-11-24",
    )
    assert command.returncode == 1
    assert f"ACME: activation {b['activation_id']} of 2026-11-24" in command.stdout
    assert "R6 would have refused it" in command.stdout


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    assert (await api.get("/readyz")).json() == {"status": "ready", "rate_limits": "memory"}
