"""`/.well-known/jwks.json`: the public key that support certificates are signed with."""

from fastapi import APIRouter

from service.http.deps import SignerDep
from service.http.schemas.certificates import Jwks

router = APIRouter(tags=["certificates"])


@router.get(
    "/.well-known/jwks.json",
    summary="The public key of support certificates (JWKS)",
    operation_id="getJwks",
    response_model=Jwks,
)
async def jwks(signer: SignerDep) -> dict:
    """Public: the JSON Web Key Set whose key verifies support certificates (ES256)."""
    return signer.jwks()
