"""Signed support certificates: a Timex client checks its support end offline, with nothing but
the service's JWKS document."""

from datetime import date

import pytest
from jose import jwk, jwt

from tests.api import Api

pytestmark = pytest.mark.anyio


async def _verify_with_jwks_only(api: Api, certificate: str) -> dict:
    jwks = (await api.get("/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(certificate)["kid"]
    [public] = [key for key in jwks["keys"] if key["kid"] == kid]
    assert "d" not in public  # the private part never leaves the service
    return jwt.decode(certificate, jwk.construct(public), algorithms=["ES256"])


async def test_the_support_state_carries_a_certificate_of_its_support_end(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-11-24")

    body = (await api.get("/v1/installations/ACME/support")).json()
    claims = await _verify_with_jwks_only(api, body["certificate"])

    assert (claims["sub"], claims["support_end"], claims["as_of"]) == ("ACME", "2026-11-24", "2026-11-24")
    assert claims["iss"] == api.settings.jwt_issuer


async def test_an_activation_carries_a_certificate_of_the_new_support_end(api: Api) -> None:
    await api.installation("ACME", purchased_on="2025-11-24")
    [key] = await api.keys(1)
    api.stand_on(date(2026, 11, 20))

    body = (await api.activate("ACME", [key])).json()
    claims = await _verify_with_jwks_only(api, body["certificate"])

    assert (claims["sub"], claims["support_end"]) == ("ACME", body["support_end_after"])


async def test_a_tampered_certificate_does_not_verify(api: Api) -> None:
    await api.installation("ACME")
    certificate = (await api.get("/v1/installations/ACME/support")).json()["certificate"]
    header, _, signature = certificate.split(".")
    forged = jwt.encode({"sub": "ACME", "support_end": "2099-12-31"}, "x", algorithm="HS256").split(".")[1]

    with pytest.raises(jwt.JWTError):
        await _verify_with_jwks_only(api, f"{header}.{forged}.{signature}")
