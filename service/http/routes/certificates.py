"""`/.well-known/jwks.json`: the public keys that support certificates are signed with; and the root-signed list of
the signing keys revoked, at a fixed path a Timex build can fetch."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service import signing_keys as keys
from service.errors import RevocationListNotFound
from service.http.deps import DriverDep, SigningKeysDep
from service.http.openapi import headers
from service.http.schemas.certificates import Jwks

router = APIRouter(tags=["certificates"])

REVOCATION_LIST_PATH = "/.well-known/timex-licensing/revoked-signing-keys.crl"


@router.get(
    "/.well-known/jwks.json",
    summary="The public keys of support certificates (JWKS)",
    operation_id="getJwks",
    response_model=Jwks,
    responses={200: {"headers": headers("Cache-Control")}},
)
async def jwks(signing_keys: SigningKeysDep) -> JSONResponse:
    """Public: the JSON Web Key Set that verifies support certificates (ES256): the key that signs now, a key about
    to sign (published `SIGNING_KEYS_RELOAD_SECONDS` plus `max-age` before it signs), and every retired key whose
    certificates may still be valid; each with `x5c`, its certificate by the root of trust. It may be kept for
    `max-age`: no certificate is signed by a key that a copy this fresh lacks."""
    key_set = await signing_keys.current()
    return JSONResponse(key_set.jwks, headers={"Cache-Control": f"public, max-age={signing_keys.max_age}"})


# Not in the API document: it is for Timex builds, as the certificate file download is, and a client generated from
# the document has no type for a CRL (openapi-python-client refuses `application/pkix-crl`). docs/certificates.md
# describes it.
@router.get(REVOCATION_LIST_PATH, include_in_schema=False)
async def revoked_signing_keys(driver: DriverDep) -> Response:
    """Public: the newest revocation list (DER, RFC 5280), signed by the root of trust: each revoked signing key's
    certificate serial number, with the instant (invalidity date) from which the certificates it signed are
    rejected. A verifier checks its signature with the pinned root before using it (docs/certificates.md)."""
    crl = await keys.revocation_list(driver=driver)
    if crl is None:
        raise RevocationListNotFound()
    return Response(crl, media_type="application/pkix-crl")
