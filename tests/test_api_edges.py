"""Every header, cursor and query value an attacker controls is answered 4xx, never 500: the non-ASCII,
over-long and out-of-range forms of each, walked over Basic and Bearer credentials, the cursor of every list,
`Idempotency-Key`, `X-Request-ID`, `Accept-Language` and the query values."""

import base64
import json
import logging
import os

import httpx
import pytest

from tests.api import Api
from tests.servers import running_server

pytestmark = pytest.mark.anyio

LONG = 20_000
AN_ID = "00000000-0000-0000-0000-000000000001"


def _b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def _cursor(*position: object) -> str:
    return _b64(json.dumps(position).encode())


# Header values as raw bytes: what a client may put on the wire, whatever its encoding.
BASIC = [
    pytest.param("Basic éé".encode(), id="non-ascii utf-8"),
    pytest.param("Basic éé".encode("latin-1"), id="non-ascii latin-1"),
    pytest.param(b"Basic " + base64.b64encode("é:é".encode("latin-1")), id="credentials not utf-8"),
    pytest.param(b"Basic " + base64.b64encode(b"rs_x:" + b"s" * LONG), id="over-long secret"),
    pytest.param(b"Basic " + b"A" * LONG, id="over-long"),
    pytest.param(b"Basic", id="empty"),
]


@pytest.mark.parametrize("authorization", BASIC)
async def test_hostile_basic_credentials_are_a_400(api: Api, authorization: bytes) -> None:
    response = await api.client.post(
        "/v1/auth/token",
        content=b"grant_type=client_credentials",
        headers=[(b"content-type", b"application/x-www-form-urlencoded"), (b"authorization", authorization)],
    )

    assert (response.status_code, response.json()["error"]) in ((400, "invalid_request"), (401, "invalid_client"))


BEARER = [
    pytest.param("Bearer é".encode(), id="non-ascii utf-8"),
    pytest.param("Bearer \xe9".encode("latin-1"), id="non-ascii latin-1"),
    pytest.param(b"Bearer " + b"a" * LONG, id="over-long"),
    pytest.param(b"Bearer " + b".".join([_b64(b'{"alg":"HS256"}').encode(), b"\xff\xfe", b"x"]), id="raw bytes"),
    pytest.param(
        b"Bearer " + f"{_b64(json.dumps({'alg': 'HS256', 'kid': 'é' * 500}).encode())}.e30.x".encode(), id="odd header"
    ),
]


@pytest.mark.parametrize("authorization", BEARER)
@pytest.mark.parametrize("path", ["/v1/keys", "/v1/installations", "/v1/webhook-endpoints"])
async def test_hostile_bearer_tokens_are_a_401(api: Api, authorization: bytes, path: str) -> None:
    response = await api.client.get(path, headers=[(b"authorization", authorization)])

    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")


CURSORS = [
    pytest.param("/v1/installations", "cursor", _cursor("2026-01-01", 2**63), id="installations id past int64"),
    pytest.param("/v1/installations", "cursor", _cursor("2026-01-01", -(2**63) - 1), id="installations id below int64"),
    pytest.param("/v1/installations", "cursor", _cursor("2026-01-01", 10**400), id="installations id huge"),
    pytest.param("/v1/installations", "cursor", _cursor("0001-01-01", 1), id="installations year 1"),
    pytest.param("/v1/installations", "cursor", _cursor("9999-12-31", 1), id="installations year 9999"),
    pytest.param("/v1/installations", "cursor", _cursor("2026-01-01", 1.5), id="installations id not whole"),
    pytest.param("/v1/installations", "cursor", "é" * 10, id="installations non-ascii"),
    pytest.param("/v1/installations", "cursor", "A" * LONG, id="installations over-long"),
    pytest.param("/v1/keys", "after", "é" * 10, id="keys non-ascii"),
    pytest.param("/v1/keys", "after", "0" * LONG, id="keys over-long"),
    pytest.param("/v1/keys", "after", "ffffffff-ffff-ffff-ffff-fffffffffffff", id="keys one digit too many"),
]


@pytest.mark.parametrize(("path", "name", "value"), CURSORS)
async def test_tampered_cursors_are_a_400(api: Api, path: str, name: str, value: str) -> None:
    response = await api.get(path, params={name: value}, headers=api.admin)

    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["code"] == "invalid_request"


QUERIES = [
    pytest.param("/v1/installations", {"limit": str(2**64)}, id="limit past int64"),
    pytest.param("/v1/installations", {"limit": "١٢"}, id="limit in other digits"),
    pytest.param("/v1/installations", {"expiring_within_days": "9" * 5000}, id="days over-long"),
    pytest.param("/v1/installations", {"support_end_from": "9999-12-31"}, id="date out of range"),
    pytest.param("/v1/installations", {"code_prefix": "é" * 2000}, id="code prefix over-long"),
    pytest.param("/v1/installations", {"code_prefix": "АБВ"}, id="code prefix non-ascii"),
    pytest.param("/v1/installations", {"reseller_id": "é"}, id="reseller non-ascii"),
    pytest.param("/v1/keys", {"limit": "-1"}, id="keys limit negative"),
    pytest.param("/v1/installations/ACME/quote", {"licenses": str(2**63)}, id="quote licenses past int64"),
    pytest.param("/v1/installations/ACME/quote", {"on": "+99999-01-01"}, id="quote on far"),
    pytest.param("/v1/installations/" + "é" * 300 + "/support", {}, id="code non-ascii over-long"),
]


@pytest.mark.parametrize(("path", "params"), QUERIES)
async def test_hostile_query_values_are_a_4xx(api: Api, path: str, params: dict) -> None:
    response = await api.get(path, params=params, headers=api.admin)

    assert 400 <= response.status_code < 500, response.text


IDEMPOTENCY_KEYS = [
    pytest.param("ключ".encode(), id="non-ascii utf-8"),
    pytest.param("cl\xe9".encode("latin-1"), id="non-ascii latin-1"),
    pytest.param(b"k" * 256, id="over-long"),
    pytest.param(b"k" * LONG, id="far over-long"),
    pytest.param(b"a\tb", id="tab"),
]


@pytest.mark.parametrize("key", IDEMPOTENCY_KEYS)
async def test_hostile_idempotency_keys_are_a_400(api: Api, key: bytes) -> None:
    response = await api.client.post(
        "/v1/resellers", json={"name": "Partner"}, headers=[*api.admin.items(), ("Idempotency-Key", key)]
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


REQUEST_IDS = [
    pytest.param("ид".encode(), id="non-ascii utf-8"),
    pytest.param(b"\xff\xfe", id="not utf-8"),
    pytest.param(b"r" * LONG, id="over-long"),
    pytest.param(b"a\x7fb", id="control"),
]


@pytest.mark.parametrize("request_id", REQUEST_IDS)
async def test_hostile_request_ids_are_replaced_not_echoed(api: Api, request_id: bytes) -> None:
    response = await api.client.get("/healthz", headers=[(b"x-request-id", request_id)])

    assert response.status_code == 200
    assert response.headers["x-request-id"].isascii() and len(response.headers["x-request-id"]) <= 64


@pytest.mark.parametrize(
    "language", ["ру".encode(), b"\xff", b"en;q=" + b"9" * LONG, b",".join([b"en"] * 5000)], ids=str
)
async def test_hostile_accept_language_is_ignored(api: Api, language: bytes) -> None:
    response = await api.client.get("/v1/installations/NOPE/support", headers=[(b"accept-language", language)])

    assert (response.status_code, response.json()["code"]) == (404, "installation_not_found")


async def test_no_hostile_input_logs_an_error(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        await api.get("/v1/installations", params={"cursor": _cursor("2026-01-01", 2**63)}, headers=api.admin)
        await api.client.post(
            "/v1/auth/token",
            content=b"grant_type=client_credentials",
            headers=[(b"content-type", b"application/x-www-form-urlencoded"), (b"authorization", "Basic éé".encode())],
        )

    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/keys", {"GET", "POST"}),
        ("DELETE", "/v1/installations", {"GET", "POST"}),
        ("PUT", "/v1/webhook-endpoints/00000000-0000-0000-0000-000000000001", {"DELETE"}),
        ("PUT", "/v1/activations", {"GET", "POST"}),
    ],
)
async def test_a_405_allows_every_method_of_its_path(api: Api, method: str, path: str, allowed: set[str]) -> None:
    response = await api.client.request(method, path)

    assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == allowed


FREE_TEXT = [
    pytest.param("\u202e", id="right-to-left override"),
    pytest.param("\u2066", id="left-to-right isolate"),
    pytest.param("\u200f", id="right-to-left mark"),
    pytest.param("\u2028", id="line separator"),
    pytest.param("\u2029", id="paragraph separator"),
    pytest.param("\x85", id="next line"),
    pytest.param("\x1b", id="escape"),
]


@pytest.mark.parametrize("character", FREE_TEXT)
async def test_a_reseller_name_refuses_control_bidi_and_separator_characters(api: Api, character: str) -> None:
    response = await api.post("/v1/resellers", {"name": f"Partner{character}gpj.exe"}, headers=api.admin)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


@pytest.mark.parametrize("character", FREE_TEXT)
async def test_a_void_reason_refuses_control_bidi_and_separator_characters(api: Api, character: str) -> None:
    response = await api.post(f"/v1/activations/{AN_ID}/void", {"reason": f"Refund{character}"}, headers=api.admin)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


async def test_free_text_keeps_every_other_script(api: Api) -> None:
    response = await api.post("/v1/resellers", {"name": "ООО «Смартек» · שותף · 合作伙伴 · 🔐"}, headers=api.admin)

    assert response.status_code == 201


def test_a_non_ascii_basic_credential_through_a_real_server_is_a_400(database_url: str) -> None:
    """Through uvicorn, as the attack sent it: a `400`, and the connection not reset."""
    with running_server({**os.environ, "DATABASE_URL": database_url}) as url:
        response = httpx.post(
            f"{url}/v1/auth/token",
            content=b"grant_type=client_credentials",
            headers=[(b"content-type", b"application/x-www-form-urlencoded"), (b"authorization", "Basic éé".encode())],
        )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
