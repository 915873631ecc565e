"""`/.well-known/jwks.json`: the public keys that support certificates are signed with."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.http.deps import SigningKeysDep
from service.http.openapi import headers
from service.http.schemas.certificates import Jwks

router = APIRouter(tags=["certificates"])


@router.get(
    "/.well-known/jwks.json",
    summary="The public keys of support certificates (JWKS)",
    operation_id="getJwks",
    response_model=Jwks,
    responses={200: {"headers": headers("Cache-Control")}},
)
async def jwks(signing_keys: SigningKeysDep) -> JSONResponse:
    """Public: the JSON Web Key Set that verifies support certificates (ES256): the key that signs now, and
    every retired key whose certificates may still be valid. It may be kept for `max-age`; a certificate whose
    `kid` is not in a kept copy is from a newer key: fetch the set again."""
    key_set = await signing_keys.current()
    return JSONResponse(key_set.jwks, headers={"Cache-Control": f"public, max-age={signing_keys.max_age}"})
