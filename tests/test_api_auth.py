"""Who may call what: admin tokens, reseller client credentials, reseller isolation."""

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import quote_plus

import pytest
from jose import jwk, jwt

from service.certificates import generate_private_key
from tests.api import Api

pytestmark = pytest.mark.anyio


async def _token(api: Api, client_id: str, client_secret: str):
    return await api.client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
    )


async def test_a_reseller_trades_its_credentials_for_a_short_lived_token(api: Api) -> None:
    reseller = await api.reseller()

    response = await _token(api, reseller["client_id"], reseller["client_secret"])

    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 15 * 60
    created = await api.post(
        "/v1/installations",
        {"code": "MINE", "purchased_on": "2026-11-20"},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert created.status_code == 201
    assert created.json()["reseller_id"] == reseller["id"]


async def test_a_wrong_client_secret_is_an_invalid_client_as_rfc_6749_writes_it(api: Api) -> None:
    reseller = await api.reseller()

    wrong = await _token(api, reseller["client_id"], "guess")
    unknown = await _token(api, "rs_nobody", reseller["client_secret"])

    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert response.headers["www-authenticate"].startswith("Basic ")
        assert response.json() == {"error": "invalid_client", "error_description": "Unknown client or wrong secret"}


def _basic(client_id: str, client_secret: str) -> dict[str, str]:
    """HTTP Basic as RFC 6749 §2.3.1 has it: id and secret form-urlencoded, then base64 of `id:secret`."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


async def test_a_reseller_may_authenticate_with_http_basic(api: Api) -> None:
    reseller = await api.reseller()

    response = await api.client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(reseller["client_id"], reseller["client_secret"]),
    )

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    listed = await api.get("/v1/keys", headers={"Authorization": f"Bearer {response.json()['access_token']}"})
    assert listed.status_code == 200


@pytest.mark.parametrize(
    ("form", "headers", "error"),
    [
        pytest.param({"grant_type": "password"}, "basic", "unsupported_grant_type", id="another grant"),
        pytest.param({}, "basic", "invalid_request", id="no grant_type"),
        pytest.param({"grant_type": "client_credentials"}, None, "invalid_request", id="no credentials"),
        pytest.param(
            {"grant_type": "client_credentials", "client_secret": "x"}, "basic", "invalid_request", id="two methods"
        ),
        pytest.param(
            {"grant_type": "client_credentials", "client_id": "rs_other"}, "basic", "invalid_request", id="two ids"
        ),
        pytest.param({"grant_type": "client_credentials"}, "not base64", "invalid_request", id="broken basic"),
    ],
)
async def test_a_malformed_token_request_is_refused_as_rfc_6749_writes_it(
    api: Api, form: dict, headers: str | None, error: str
) -> None:
    reseller = await api.reseller()
    authorization = {
        "basic": _basic(reseller["client_id"], reseller["client_secret"]),
        "not base64": {"Authorization": "Basic %%%"},
        None: {},
    }[headers]

    response = await api.client.post("/v1/auth/token", data=form, headers=authorization)

    assert (response.status_code, response.json()["error"]) == (400, error)
    assert response.json()["error_description"]


async def test_a_repeated_token_parameter_is_an_invalid_request(api: Api) -> None:
    reseller = await api.reseller()
    body = f"grant_type=client_credentials&grant_type=client_credentials&client_id={reseller['client_id']}"

    response = await api.client.post(
        "/v1/auth/token",
        content=f"{body}&client_secret={reseller['client_secret']}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hmac_token(claims: dict, key: bytes) -> str:
    """Signed by hand: python-jose itself refuses to use a public key as an HMAC secret."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _claims(api: Api, **changes) -> dict:
    now = int(time.time())
    return {
        "iss": api.settings.jwt_issuer,
        "aud": api.settings.jwt_audience,
        "sub": "x",
        "role": "admin",
        "iat": now,
        "exp": now + 300,
        **changes,
    }


def _bad_token(api: Api, case: str) -> str:
    secret = api.settings.jwt_secret
    ec_key = generate_private_key()
    ec_public = jwk.construct(ec_key, "ES256").public_key().to_pem().decode()
    return {
        "expired": lambda: jwt.encode(_claims(api, exp=int(time.time()) - 60), secret, algorithm="HS256"),
        "other secret": lambda: jwt.encode(_claims(api), "another-secret", algorithm="HS256"),
        "other audience": lambda: jwt.encode(_claims(api, aud="someone-else"), secret, algorithm="HS256"),
        "other issuer": lambda: jwt.encode(_claims(api, iss="someone-else"), secret, algorithm="HS256"),
        "no expiry": lambda: jwt.encode(
            {k: v for k, v in _claims(api).items() if k != "exp"}, secret, algorithm="HS256"
        ),
        "unknown role": lambda: jwt.encode(_claims(api, role="root"), secret, algorithm="HS256"),
        "reseller without an id": lambda: jwt.encode(
            _claims(api, role="reseller", sub="nobody"), secret, algorithm="HS256"
        ),
        "alg none": lambda: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(api))}.",
        # HS/RS confusion: HMAC keyed with a public key, and a token signed with an asymmetric key.
        "HS256 keyed with a public key": lambda: _hmac_token(_claims(api), ec_public.encode()),
        "ES256": lambda: jwt.encode(_claims(api), ec_key, algorithm="ES256"),
        "garbage": lambda: "not.a.token",
    }[case]()


BAD_TOKENS = [
    "expired",
    "other secret",
    "other audience",
    "other issuer",
    "no expiry",
    "unknown role",
    "reseller without an id",
    "alg none",
    "HS256 keyed with a public key",
    "ES256",
    "garbage",
]


async def test_a_missing_token_is_unauthenticated(api: Api) -> None:
    response = await api.post("/v1/keys", {"count": 1})

    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")


@pytest.mark.parametrize("case", BAD_TOKENS)
async def test_a_bad_token_is_unauthenticated(api: Api, case: str) -> None:
    headers = {"Authorization": f"Bearer {_bad_token(api, case)}"}

    response = await api.post("/v1/keys", {"count": 1}, headers=headers)

    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/resellers", {"name": "Other"}),
        ("/v1/keys", {"count": 1}),
        ("/v1/keys/00000000-0000-0000-0000-000000000000/revoke", None),
        ("/v1/activations/00000000-0000-0000-0000-000000000000/void", {"reason": "x"}),
    ],
)
async def test_a_reseller_cannot_call_admin_endpoints(api: Api, path: str, body: dict | None) -> None:
    reseller = await api.reseller()

    response = await api.client.request("POST", path, json=body, headers=reseller["headers"])

    assert (response.status_code, response.json()["code"]) == (403, "forbidden")


async def test_a_reseller_sees_only_its_own_installations_and_keys(api: Api) -> None:
    mine, theirs = await api.reseller("Mine"), await api.reseller("Theirs")
    await api.installation("THEIRS", headers=theirs["headers"], purchased_on="2026-11-20")
    await api.keys(2, reseller_id=theirs["id"])
    await api.keys(1, reseller_id=mine["id"])

    installation = await api.get("/v1/installations/THEIRS", headers=mine["headers"])
    own_keys = await api.get("/v1/keys", headers=mine["headers"])
    their_keys = await api.get("/v1/keys", params={"reseller_id": theirs["id"]}, headers=mine["headers"])

    assert (installation.status_code, installation.json()["code"]) == (403, "forbidden")
    assert [k["reseller_id"] for k in own_keys.json()["items"]] == [mine["id"]]
    assert (their_keys.status_code, their_keys.json()["code"]) == (403, "forbidden")


async def test_a_reseller_registers_installations_for_itself_only(api: Api) -> None:
    mine, theirs = await api.reseller("Mine"), await api.reseller("Theirs")

    response = await api.post(
        "/v1/installations",
        {"code": "X", "purchased_on": "2025-01-01", "reseller_id": theirs["id"]},
        headers=mine["headers"],
    )

    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
