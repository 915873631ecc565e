"""Hostile or sloppy input is refused at validation as `400 invalid_request`: it never reaches the
database, never answers 500, and never logs an error."""

import json
import logging
from uuid import uuid4

import pytest

from service.http.openapi import document
from tests.api import Api

pytestmark = pytest.mark.anyio

NUL = "\x00"
AN_ID = "00000000-0000-0000-0000-000000000001"
TOKEN_FORM = {"grant_type": "client_credentials", "client_id": "rs_abc", "client_secret": "secret"}


def _refused(response) -> bool:
    """`400 invalid_request`: a problem's `code`, or at the token endpoint RFC 6749's `error`."""
    body = response.json()
    return (response.status_code, body.get("code", body.get("error"))) == (400, "invalid_request")


# Every string an operation takes, in turn holding a NUL (PostgreSQL refuses NUL in text outright).
NUL_INPUTS = [
    pytest.param("POST", "/v1/auth/token", {"data": {**TOKEN_FORM, "client_id": f"rs_{NUL}"}}, id="token client_id"),
    pytest.param(
        "POST", "/v1/auth/token", {"data": {**TOKEN_FORM, "client_secret": f"s{NUL}"}}, id="token client_secret"
    ),
    pytest.param(
        "POST",
        "/v1/auth/token",
        {"data": {**TOKEN_FORM, "grant_type": f"client_credentials{NUL}"}},
        id="token grant_type",
    ),
    pytest.param(
        "POST",
        "/v1/auth/token",
        {"files": {"client_id": (None, f"rs_{NUL}"), "client_secret": (None, "s")}},
        id="token multipart",
    ),
    pytest.param("POST", "/v1/resellers", {"json": {"name": f"Partner{NUL}"}}, id="reseller name"),
    pytest.param(
        "POST",
        "/v1/installations",
        {"json": {"code": f"ACME{NUL}", "purchased_on": "2025-03-15"}},
        id="installation code",
    ),
    pytest.param(
        "POST",
        "/v1/installations",
        {"json": {"code": "ACME", "purchased_on": f"2025-03-15{NUL}"}},
        id="installation purchased_on",
    ),
    pytest.param(
        "POST",
        "/v1/installations",
        {"json": {"code": "ACME", "support_end": f"{NUL}2026-12-31"}},
        id="installation support_end",
    ),
    pytest.param(
        "POST",
        "/v1/installations",
        {"json": {"code": "ACME", "purchased_on": "2025-03-15", "reseller_id": f"{AN_ID}{NUL}"}},
        id="installation reseller_id",
    ),
    pytest.param("GET", "/v1/installations/AC%00ME", {}, id="installation path"),
    pytest.param("GET", "/v1/installations/AC%00ME/support", {}, id="support path"),
    pytest.param("GET", "/v1/installations/AC%00ME/quote", {}, id="quote path"),
    pytest.param("GET", "/v1/installations/ACME/quote", {"params": {"on": f"2027-01-01{NUL}"}}, id="quote on"),
    pytest.param("GET", "/v1/installations/ACME/quote", {"params": {"licenses": f"1{NUL}"}}, id="quote licenses"),
    pytest.param("GET", "/v1/quote", {"params": {"support_end": f"2026-03-15{NUL}"}}, id="bare quote support_end"),
    pytest.param("POST", "/v1/keys", {"json": {"count": 1, "reseller_id": f"{AN_ID}{NUL}"}}, id="keys reseller_id"),
    pytest.param("GET", "/v1/keys", {"params": {"status": f"issued{NUL}"}}, id="keys status"),
    pytest.param("GET", "/v1/keys", {"params": {"reseller_id": f"{AN_ID}{NUL}"}}, id="keys reseller_id query"),
    pytest.param("GET", "/v1/keys", {"params": {"after": f"{AN_ID}{NUL}"}}, id="keys after"),
    pytest.param("GET", "/v1/keys", {"params": {"limit": f"10{NUL}"}}, id="keys limit"),
    pytest.param("POST", f"/v1/keys/{AN_ID}%00/revoke", {}, id="revoke path"),
    pytest.param(
        "POST",
        "/v1/activations",
        {"json": {"installation": f"ACME{NUL}", "keys": ["TXS-0000"]}},
        id="activation installation",
    ),
    pytest.param(
        "POST", "/v1/activations", {"json": {"installation": "ACME", "keys": [f"TXS-{NUL}"]}}, id="activation key"
    ),
    pytest.param("POST", f"/v1/activations/{AN_ID}/void", {"json": {"reason": f"refund{NUL}"}}, id="void reason"),
    pytest.param("POST", f"/v1/activations/{AN_ID}%00/void", {"json": {"reason": "refund"}}, id="void path"),
]


@pytest.mark.parametrize(("method", "path", "request_"), NUL_INPUTS)
async def test_a_nul_in_any_string_is_an_invalid_request_and_logs_no_error(
    api: Api,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    request_: dict,
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await api.client.request(method, path, headers=api.admin, **request_)

    assert _refused(response), response.text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("character", ["\x01", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f"])
async def test_a_single_line_refuses_every_control_character(api: Api, character: str) -> None:
    response = await api.post("/v1/resellers", {"name": f"Partner{character}LLC"}, headers=api.admin)

    assert _refused(response), response.text


async def test_free_text_takes_tabs_and_line_breaks_but_no_other_control_character(api: Api) -> None:
    await api.installation("ACME")
    [first, second] = await api.keys(2)
    activation = (await api.activate("ACME", [first])).json()["activation_id"]
    path = f"/v1/activations/{activation}/void"

    refused = [
        await api.post(path, {"reason": f"Refund{character}order 1234"}, headers=api.admin)
        for character in (NUL, "\x0b", "\x7f")
    ]
    voided = await api.post(path, {"reason": "Refund,\r\n\torder 1234"}, headers=api.admin)
    # A key is read as people type and paste it: the whitespace around and inside it does not matter.
    activated = await api.activate("ACME", [f"\t{second}\r\n"])

    assert all(_refused(response) for response in refused), [response.text for response in refused]
    assert (voided.status_code, voided.json()["reason"]) == (200, "Refund,\r\n\torder 1234")
    assert activated.status_code == 201, activated.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/resellers", b'{"name": "Partner\\ud800"}'),
        ("/v1/installations", b'{"code": "\\udfffACME", "purchased_on": "2025-03-15"}'),
        ("/v1/activations", b'{"installation": "ACME", "keys": ["TXS-\\ud83d"]}'),
        (f"/v1/activations/{AN_ID}/void", b'{"reason": "refund \\udc00"}'),
    ],
)
async def test_a_lone_surrogate_in_json_is_an_invalid_request(api: Api, path: str, body: bytes) -> None:
    response = await api.client.post(path, content=body, headers={**api.admin, "Content-Type": "application/json"})

    assert _refused(response), response.text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"name": "Partner"', id="malformed JSON"),
        pytest.param(b'{"name": "Partner\xff\xfe"}', id="invalid UTF-8"),
        pytest.param(b'{"name": "Partner \xc0\xaf"}', id="overlong UTF-8"),
        pytest.param(b'{"name": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", id="nested 30,000 deep"),
    ],
)
async def test_a_body_that_is_not_json_is_an_invalid_request(
    api: Api,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await api.client.post(
            "/v1/resellers", content=body, headers={**api.admin, "Content-Type": "application/json"}
        )

    assert _refused(response), response.text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_malformed_form_is_an_invalid_request(api: Api) -> None:
    response = await api.client.post(
        "/v1/auth/token", content=b"client_id=rs_abc", headers={"Content-Type": "multipart/form-data"}
    )

    assert _refused(response), response.text


@pytest.mark.parametrize("count", [True, "5", 1.0, "1e1"])
async def test_a_count_is_a_json_integer(api: Api, count: object) -> None:
    response = await api.post("/v1/keys", {"count": count}, headers=api.admin)

    assert _refused(response), response.text
    assert await api.key_statuses() == {}


@pytest.mark.parametrize(
    "origin",
    [
        {"purchased_on": "2025-03-15T00:00:00"},
        {"purchased_on": "2025-03-15T00:00:00Z"},
        {"support_end": "2026-12-31 00:00"},
        {"purchased_on": 1741996800},
        {"purchased_on": "20250315"},
        {"purchased_on": "2025-W11-6"},
    ],
)
async def test_a_date_in_a_body_is_a_date_written_yyyy_mm_dd(api: Api, origin: dict) -> None:
    response = await api.post("/v1/installations", {"code": "ACME", **origin}, headers=api.admin)

    assert _refused(response), response.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/installations/ACME/quote", {"on": "2027-03-16T00:00:00"}),
        ("/v1/installations/ACME/quote", {"on": "2027-03-16T00:00:00+03:00"}),
        ("/v1/quote", {"support_end": "2026-03-15T00:00:00"}),
        ("/v1/quote", {"support_end": "2026-03-15", "on": "20270316"}),
    ],
)
async def test_a_date_in_a_query_is_a_date_written_yyyy_mm_dd(api: Api, path: str, params: dict) -> None:
    await api.installation("ACME")

    response = await api.get(path, params=params)

    assert _refused(response), response.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/installations/ACME/quote", {"licenses": "1.0"}),
        ("/v1/installations/ACME/quote", {"licenses": "true"}),
        ("/v1/installations/ACME/quote", {"licenses": "+1"}),
        ("/v1/installations/ACME/quote", {"licenses": " 1"}),
        ("/v1/installations/ACME/quote", {"licenses": "1_0"}),
        ("/v1/installations/ACME/quote", {"licenses": "\u0661"}),  # ARABIC-INDIC DIGIT ONE
        ("/v1/quote", {"support_end": "2026-03-15", "licenses": "2.0"}),
        ("/v1/keys", {"limit": "1.0"}),
        ("/v1/keys", {"limit": "1e2"}),
    ],
)
async def test_an_integer_in_a_query_is_written_in_digits(api: Api, path: str, params: dict) -> None:
    await api.installation("ACME")

    response = await api.get(path, params=params, headers=api.admin)

    assert _refused(response), response.text


@pytest.mark.parametrize(
    "query",
    [
        "on=2027-01-01&on=2027-02-01",
        "licenses=1&licenses=2",
        "on=2027-01-01&o%6E=2027-02-01",
        "on=2027-01-01&licenses=2&on=2027-01-01",
    ],
)
async def test_a_repeated_query_parameter_is_an_invalid_request(api: Api, query: str) -> None:
    await api.installation("ACME")

    response = await api.get(f"/v1/installations/ACME/quote?{query}")

    assert _refused(response), response.text


async def test_a_repeated_filter_is_an_invalid_request(api: Api) -> None:
    response = await api.get("/v1/keys?status=issued&status=used", headers=api.admin)

    assert _refused(response), response.text


async def test_well_formed_input_is_still_taken(api: Api) -> None:
    reseller = await api.reseller()
    installation = await api.installation("ACME", purchased_on="2025-03-15", reseller_id=reseller["id"])
    issued = await api.post("/v1/keys", {"count": 2, "reseller_id": reseller["id"].replace("-", "")}, headers=api.admin)
    quote = await api.get("/v1/installations/ACME/quote?on=2027-03-16&licenses=2")
    page = await api.get("/v1/keys?status=issued&limit=1", headers=api.admin)

    assert installation["support_end"] == "2026-03-15"
    assert (issued.status_code, len(issued.json()["keys"])) == (201, 2)
    assert (quote.status_code, quote.json()["licenses"]) == (200, 2)
    assert (page.status_code, len(page.json()["items"])) == (200, 1)


SPEC = json.loads(document())


def _documented(operation_id: str, code: str) -> dict:
    [operation] = [o for path in SPEC["paths"].values() for o in path.values() if o["operationId"] == operation_id]
    [example] = [
        content["examples"][code]["value"]
        for response in operation["responses"].values()
        for media_type, content in response.get("content", {}).items()
        if media_type == "application/problem+json" and code in content["examples"]
    ]
    return example


@pytest.mark.parametrize(
    ("operation_id", "method", "path", "request_"),
    [
        ("activateKeys", "POST", "/v1/activations", {"json": {"installation": "ACME-0001", "keys": ["x"] * 51}}),
        ("voidActivation", "POST", "/v1/activations/abc/void", {"json": {"reason": "x"}}),
        ("registerInstallation", "POST", "/v1/installations", {"json": {"code": "A", "purchased_on": "2025-02-30"}}),
        ("listInstallations", "GET", "/v1/installations", {"params": {"state": "soon"}}),
        ("getInstallation", "GET", "/v1/installations/bad code!", {}),
        ("getSupportState", "GET", "/v1/installations/bad code!/support", {}),
        ("quoteRenewal", "GET", "/v1/installations/ACME-0001/quote", {"params": {"on": "2027-3-16"}}),
        ("quoteFromSupportEnd", "GET", "/v1/quote", {"params": {"on": "2027-03-16"}}),
        ("issueKeys", "POST", "/v1/keys", {"json": {"count": 0}}),
        ("listKeys", "GET", "/v1/keys", {"params": {"limit": "0"}}),
        ("revokeKey", "POST", "/v1/keys/abc/revoke", {}),
        ("registerReseller", "POST", "/v1/resellers", {"json": {"name": ""}}),
        ("getReseller", "GET", "/v1/resellers/abc", {}),
        ("disableReseller", "POST", "/v1/resellers/abc/disable", {}),
        ("enableReseller", "POST", "/v1/resellers/abc/enable", {}),
        ("rotateResellerSecret", "POST", "/v1/resellers/abc/rotate-secret", {}),
        ("registerWebhookEndpoint", "POST", "/v1/webhook-endpoints", {"json": {"url": ""}}),
        ("disableWebhookEndpoint", "POST", "/v1/webhook-endpoints/abc/disable", {}),
        ("deleteWebhookEndpoint", "DELETE", "/v1/webhook-endpoints/abc", {}),
        ("rotateWebhookEndpointSecret", "POST", "/v1/webhook-endpoints/abc/rotate-secret", {}),
        ("listWebhookDeliveries", "GET", "/v1/webhook-endpoints/abc/deliveries", {}),
        ("redeliverWebhook", "POST", f"/v1/webhook-endpoints/{uuid4()}/deliveries/abc/redeliver", {}),
    ],
)
async def test_each_operations_documented_invalid_request_is_what_it_answers(
    api: Api, operation_id: str, method: str, path: str, request_: dict
) -> None:
    response = await api.client.request(method, path, headers=api.admin, **request_)

    assert response.json() == _documented(operation_id, "invalid_request")
