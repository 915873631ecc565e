"""Every list pages one way: `limit` and an opaque `cursor` in; `items`, `has_more` and `next_cursor` out, and the
next page's address in `Link: <…>; rel="next"`. Following the links visits every item once, in the list's order;
the last page has neither a cursor nor a link. The new reads: `GET /v1/resellers`, `GET /v1/activations` (the ledger
across installations, filtered) and `GET /v1/keys/{key_id}`."""

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date

import httpx
import pytest

from tests.api import Api
from tests.cabinet import invite
from tests.conftest import make_settings, service
from tests.receiver import Receiver
from tests.test_webhooks import deliver_all, endpoint

pytestmark = pytest.mark.anyio

LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


async def _every_page(api: Api, path: str, headers: dict, **params: object) -> list[dict]:
    """The list's pages, got by following each answer's `Link`, checked against its body on the way."""
    pages: list[dict] = []
    response = await api.get(path, params=params, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        assert page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            assert "link" not in response.headers
            return pages
        link = LINK.match(response.headers["link"])
        assert link is not None, response.headers["link"]
        next_url = httpx.URL(link["url"])
        assert next_url.path == path and next_url.params["cursor"] == page["next_cursor"]
        assert {k: v for k, v in next_url.params.items() if k != "cursor"} == {k: str(v) for k, v in params.items()}
        response = await api.get(link["url"], headers=headers)


Arrange = Callable[[Api], Awaitable[tuple[str, dict, dict, str]]]


async def _keys(api: Api) -> tuple[str, dict, dict, str]:
    await api.keys(5)
    return "/v1/keys", {}, api.admin, "key_id"


async def _installations(api: Api) -> tuple[str, dict, dict, str]:
    for n in range(5):
        await api.installation(f"INST-{n}", support_end=f"2027-0{n + 1}-01")
    return "/v1/installations", {}, api.admin, "code"


async def _resellers(api: Api) -> tuple[str, dict, dict, str]:
    for n in range(5):
        await api.reseller(f"Partner {n}")
    return "/v1/resellers", {}, api.admin, "id"


async def _activations(api: Api) -> tuple[str, dict, dict, str]:
    await api.installation("ACME-0001", support_end="2027-01-01")
    for key in await api.keys(5):
        assert (await api.activate("ACME-0001", [key])).status_code == 201
    return "/v1/activations", {"installation": "ACME-0001"}, api.admin, "activation_id"


async def _webhook_endpoints(api: Api) -> tuple[str, dict, dict, str]:
    for n in range(5):
        await endpoint(api, f"https://127.0.0.1/hook-{n}")
    return "/v1/webhook-endpoints", {}, api.admin, "id"


async def _users(api: Api) -> tuple[str, dict, dict, str]:
    for n in range(5):
        await invite(api, f"user-{n}")
    return "/v1/users", {}, api.admin, "id"


async def _audit_events(api: Api) -> tuple[str, dict, dict, str]:
    await _users(api)  # each invitation is an audit event
    return "/v1/audit-events", {}, api.admin, "id"


LISTS: dict[str, Arrange] = {
    "keys": _keys,
    "installations": _installations,
    "resellers": _resellers,
    "activations": _activations,
    "users": _users,
    "audit events": _audit_events,
    "webhook endpoints": _webhook_endpoints,
}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver.running() as receiver:
        yield receiver


@pytest.fixture
async def hooks(database_url: str, receiver: Receiver) -> AsyncIterator[Api]:
    """The service sending to the receiver (allowed by its host and port), and to `https://127.0.0.1`."""
    allowed = ["127.0.0.1", receiver.host]
    settings = make_settings(database_url, webhook_allowed_hosts=allowed, webhook_retry_base_seconds=0)
    async with service(settings) as api:
        yield api


@pytest.mark.parametrize("arrange", LISTS.values(), ids=LISTS.keys())
async def test_following_the_links_visits_every_item_once_in_the_lists_order(hooks: Api, arrange: Arrange) -> None:
    path, filters, headers, id_field = await arrange(hooks)
    whole = (await hooks.get(path, params={**filters, "limit": 1000}, headers=headers)).json()
    assert len(whole["items"]) == 5 and not whole["has_more"]

    pages = await _every_page(hooks, path, headers, **filters, limit=2)

    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert [item[id_field] for page in pages for item in page["items"]] == [item[id_field] for item in whole["items"]]


async def test_a_webhook_endpoints_deliveries_page_the_same_way(hooks: Api, receiver: Receiver) -> None:
    hook = await endpoint(hooks, receiver.url, event_types=["installation.registered"])
    for n in range(5):
        await hooks.installation(f"INST-{n}")
    await deliver_all(hooks)
    path = f"/v1/webhook-endpoints/{hook['id']}/deliveries"
    whole = (await hooks.get(path, params={"limit": 1000}, headers=hooks.admin)).json()["items"]

    pages = await _every_page(hooks, path, hooks.admin, limit=2)

    assert [item["id"] for page in pages for item in page["items"]] == [item["id"] for item in whole]
    assert len(whole) == 5


async def test_keys_still_take_after_and_give_next_after_for_one_minor_version(api: Api) -> None:
    await api.keys(3)
    first = (await api.get("/v1/keys", params={"limit": 2}, headers=api.admin)).json()
    assert first["next_after"] == first["items"][-1]["key_id"]

    by_after = await api.get("/v1/keys", params={"limit": 2, "after": first["next_after"]}, headers=api.admin)
    by_cursor = await api.get("/v1/keys", params={"limit": 2, "cursor": first["next_cursor"]}, headers=api.admin)

    assert by_after.json() == by_cursor.json()
    assert [item["key_id"] for item in by_after.json()["items"]] != [item["key_id"] for item in first["items"]]
    both = {"after": first["next_after"], "cursor": first["next_cursor"]}
    refused = await api.get("/v1/keys", params=both, headers=api.admin)
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/keys",
        "/v1/installations",
        "/v1/resellers",
        "/v1/activations",
        "/v1/webhook-endpoints",
    ],
)
@pytest.mark.parametrize("cursor", ["WyJ4Il0", "WzEsMiwzXQ", "bm90IGpzb24", "W10"])
async def test_a_cursor_the_service_did_not_give_is_refused_on_every_list(api: Api, path: str, cursor: str) -> None:
    response = await api.get(path, params={"cursor": cursor}, headers=api.admin)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_request"), response.text


async def test_resellers_are_listed_to_admins_only(api: Api) -> None:
    partner = await api.reseller()
    listed = (await api.get("/v1/resellers", headers=api.admin)).json()["items"]
    assert [(r["id"], r["name"]) for r in listed] == [(partner["id"], "Partner")]
    assert "client_secret" not in listed[0]

    refused = await api.get("/v1/resellers", headers=partner["headers"])
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")


async def test_the_activations_ledger_is_filtered_by_installation_reseller_days_and_voids(api: Api) -> None:
    partner, other = await api.reseller("Partner"), await api.reseller("Other")
    await api.installation("MINE", headers=partner["headers"], purchased_on="2026-11-20")
    await api.installation("THEIRS", headers=other["headers"], purchased_on="2026-11-20")
    mine_first, mine_second, theirs = await api.keys(3)
    assert (await api.activate("MINE", [mine_first])).status_code == 201
    assert (await api.activate("THEIRS", [theirs])).status_code == 201
    api.stand_on(date(2026, 12, 1))
    voided = (await api.activate("MINE", [mine_second])).json()
    void = await api.post(f"/v1/activations/{voided['activation_id']}/void", {"reason": "refund"}, headers=api.admin)
    assert void.status_code == 200, void.text

    async def listed(headers: dict, **params: object) -> list[tuple[str, str]]:
        response = await api.get("/v1/activations", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [(item["installation"], item["activated_on"]) for item in response.json()["items"]]

    everything = [("MINE", "2026-11-24"), ("THEIRS", "2026-11-24"), ("MINE", "2026-12-01")]
    assert await listed(api.admin) == everything
    assert await listed(partner["headers"]) == [("MINE", "2026-11-24"), ("MINE", "2026-12-01")]
    assert await listed(api.admin, reseller_id=other["id"]) == [("THEIRS", "2026-11-24")]
    assert await listed(api.admin, installation="theirs") == [("THEIRS", "2026-11-24")]
    assert await listed(api.admin, activated_from="2026-11-25") == [("MINE", "2026-12-01")]
    assert await listed(api.admin, activated_to="2026-11-30") == everything[:2]
    assert await listed(api.admin, voided="true") == [("MINE", "2026-12-01")]
    assert await listed(api.admin, voided="false") == everything[:2]
    assert await listed(partner["headers"], installation="THEIRS") == []

    entry = (await api.get("/v1/activations", params={"voided": "true"}, headers=api.admin)).json()["items"][0]
    assert entry["reseller_id"] == partner["id"] and entry["void_reason"] == "refund"
    assert entry["key_ids"] == [period["key_id"] for period in voided["periods"]]
    refused = await api.get("/v1/activations", params={"reseller_id": other["id"]}, headers=partner["headers"])
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")


async def test_a_key_is_read_by_its_id_by_an_admin_and_its_own_reseller_only(api: Api) -> None:
    partner, other = await api.reseller("Partner"), await api.reseller("Other")
    await api.keys(1, reseller_id=partner["id"])
    key_id = (await api.get("/v1/keys", headers=api.admin)).json()["items"][0]["key_id"]

    by_admin = await api.get(f"/v1/keys/{key_id}", headers=api.admin)
    by_owner = await api.get(f"/v1/keys/{key_id}", headers=partner["headers"])
    by_other = await api.get(f"/v1/keys/{key_id}", headers=other["headers"])
    unknown = await api.get("/v1/keys/0b9e3a8e-7d55-4a0f-8f7c-3c5d1e2f4a6b", headers=api.admin)

    assert by_admin.status_code == 200 and by_admin.json() == by_owner.json()
    assert by_admin.json()["status"] == "issued" and by_admin.json()["reseller_id"] == partner["id"]
    assert (by_other.status_code, by_other.json()["code"]) == (404, "key_not_found")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "key_not_found")


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/v1/installations", "WyIyMDI3LTAxLTAxIiw5MjIzMzcyMDM2ODU0Nzc1ODA4XQ"),  # an id of 2**63: past bigint
        ("/v1/installations", "WyIyMDI3LTAxLTAxIiwtOTIyMzM3MjAzNjg1NDc3NTgwOV0"),  # below it
        ("/v1/installations", "WyIyMDI3LTAxLTAxIix0cnVlXQ"),  # true is no id
        # an instant without its zone
        ("/v1/resellers", "WyIyMDI2LTEyLTA1IDA2OjAwOjAwIiwiNWYwYzZhNTctMmY0Yi00YzFlLTlhNTEtMGQzYzJiMWE5ZTg4Il0"),
    ],
)
async def test_a_cursor_holding_values_no_page_ends_on_is_refused_not_failed(api: Api, path: str, cursor: str) -> None:
    response = await api.get(path, params={"cursor": cursor}, headers=api.admin)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_request"), response.text
