"""`/.well-known/jwks.json`: the public keys that support certificates are signed with."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.http.deps import SigningKeysDep

router = APIRouter(tags=["certificates"])


@router.get(
    "/.well-known/jwks.json",
    summary="The public keys of support certificates (JWKS)",
    response_model=dict,
    responses={
        200: {
            "headers": {
                "Cache-Control": {"description": "How long the key set may be kept", "schema": {"type": "string"}}
            }
        }
    },
)
async def jwks(signing_keys: SigningKeysDep) -> JSONResponse:
    """Public: the JSON Web Key Set that verifies support certificates (ES256): the key that signs now, and
    every retired key whose certificates may still be valid. It may be kept for `max-age`; a certificate whose
    `kid` is not in a kept copy is from a newer key: fetch the set again."""
    key_set = await signing_keys.current()
    return JSONResponse(key_set.jwks, headers={"Cache-Control": f"public, max-age={signing_keys.max_age}"})
