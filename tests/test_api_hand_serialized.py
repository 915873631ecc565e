"""The answers written by hand (`SupportOut.json_of`, `ActivationOut.json_of`), for speed, rather than by their
models: each one, in every shape it takes, is exactly what its model describes. Every field the model declares,
of its type, and no other, in nested objects too; and each value written as the model would write it."""

from datetime import date

import httpx
import pytest
from pydantic import BaseModel

from service.http.schemas.activations import ActivationOut
from service.http.schemas.installations import SupportOut
from tests.api import Api

pytestmark = pytest.mark.anyio


def assert_is_exactly(model: type[BaseModel], response: httpx.Response) -> None:
    assert response.headers["content-type"] == "application/json"
    # Strict: `"172"` is no count, and `1` no boolean. `extra="forbid"` holds in nested models too.
    parsed = model.model_validate_json(response.content, strict=True, extra="forbid")
    assert parsed.model_dump(mode="json", by_alias=True) == response.json()


@pytest.mark.parametrize(
    ("purchased_on", "keys", "active"),
    [
        pytest.param("2026-11-01", 0, True, id="active"),
        pytest.param("2025-03-15", 0, False, id="lapsed"),
        pytest.param("2026-11-01", 2, True, id="renewed-with-bonus"),
    ],
)
async def test_the_support_state_is_exactly_a_support_out(api: Api, purchased_on: str, keys: int, active: bool) -> None:
    await api.installation("ACME", purchased_on=purchased_on)
    if keys:
        assert (await api.activate("ACME", await api.keys(keys))).status_code == 201

    response = await api.get("/v1/installations/ACME/support")

    assert response.status_code == 200
    assert_is_exactly(SupportOut, response)
    assert response.json()["active"] is active


@pytest.mark.parametrize(
    ("purchased_on", "today", "keys"),
    [
        pytest.param("2026-11-01", date(2026, 11, 24), 1, id="one-key"),
        pytest.param("2026-11-01", date(2026, 11, 24), 3, id="three-keys"),
        pytest.param("2025-03-15", date(2026, 6, 15), 2, id="lapsed-back-dated"),
    ],
)
async def test_an_activation_and_its_replay_are_exactly_an_activation_out(
    api: Api, purchased_on: str, today: date, keys: int
) -> None:
    await api.installation("ACME", purchased_on=purchased_on)
    batch = await api.keys(keys)
    api.stand_on(today)

    created = await api.activate("ACME", batch)
    replayed = await api.activate("ACME", batch)

    assert (created.status_code, replayed.status_code) == (201, 200)
    assert_is_exactly(ActivationOut, created)
    assert_is_exactly(ActivationOut, replayed)
    assert len(created.json()["periods"]) == keys
