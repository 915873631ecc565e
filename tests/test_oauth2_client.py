"""A reseller's OAuth2 library works with the token endpoint as it comes: Authlib's httpx client, with its
defaults (HTTP Basic, `client_secret_basic`), fetches a token, uses it, and reads a refusal as an OAuth2 error."""

import warnings

import httpx
import pytest
from authlib.deprecate import AuthlibDeprecationWarning

from tests.api import Api

with warnings.catch_warnings():
    # Authlib 1.9 would rather have its `httpx2` fork, and warns that it falls back to httpx.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

pytestmark = pytest.mark.anyio

TOKEN_URL = "http://testserver/v1/auth/token"


def _client(api: Api, client_id: str, client_secret: str, sent: list[str] | None = None) -> AsyncOAuth2Client:
    async def record(request: httpx.Request) -> None:
        if sent is not None:
            sent.append(request.url.path)

    return AsyncOAuth2Client(
        client_id,
        client_secret,
        token_endpoint=TOKEN_URL,
        grant_type="client_credentials",
        transport=api.transport,
        base_url="http://testserver",
        event_hooks={"request": [record]},
    )


async def test_authlib_fetches_a_token_with_its_defaults_and_calls_the_api_with_it(api: Api) -> None:
    reseller = await api.reseller()

    async with _client(api, reseller["client_id"], reseller["client_secret"]) as client:
        token = await client.fetch_token()
        registered = await client.post("/v1/installations", json={"code": "ACME", "purchased_on": "2026-11-20"})
        keys = await client.get("/v1/keys")

    assert client.token_endpoint_auth_method == "client_secret_basic"
    assert token["token_type"] == "bearer" and token["expires_in"] == 15 * 60
    assert registered.status_code == 201 and registered.json()["reseller_id"] == reseller["id"]
    assert keys.status_code == 200


async def test_authlib_fetches_a_new_token_when_the_old_one_expires(api: Api) -> None:
    reseller = await api.reseller()

    sent: list[str] = []

    async with _client(api, reseller["client_id"], reseller["client_secret"], sent) as client:
        await client.fetch_token()
        client.token["expires_at"] = 0  # as if 15 minutes had passed
        listed = await client.get("/v1/keys")

    assert listed.status_code == 200
    assert sent == ["/v1/auth/token", "/v1/auth/token", "/v1/keys"]


async def test_authlib_reads_a_wrong_secret_as_invalid_client(api: Api) -> None:
    reseller = await api.reseller()

    async with _client(api, reseller["client_id"], "guess") as client:
        with pytest.raises(OAuthError) as refused:
            await client.fetch_token()

    assert refused.value.error == "invalid_client"
    assert client.token is None
