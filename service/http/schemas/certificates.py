"""`/.well-known/jwks.json`: the public keys that verify support certificates."""

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from service.http.schemas.common import examples


class Jwk(BaseModel):
    """An EC P-256 public key (RFC 7517, RFC 7518 §6.2)."""

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str = Field(max_length=43, pattern="^[A-Za-z0-9_-]{43}$", description="base64url, 32 bytes")
    y: str = Field(max_length=43, pattern="^[A-Za-z0-9_-]{43}$", description="base64url, 32 bytes")
    kid: str = Field(
        max_length=43,
        pattern="^[A-Za-z0-9_-]{43}$",
        description="The RFC 7638 thumbprint: the `kid` in a certificate's header",
    )
    use: Literal["sig"]
    alg: Literal["ES256"]
    x5c: list[Annotated[str, Field(max_length=4096)]] = Field(
        max_length=4,
        description="RFC 7517 §4.7: the key's X.509 certificate, signed by the root of trust (base64 DER); "
        "empty for a key the root did not certify, which signs nothing",
    )


class Jwks(BaseModel):
    model_config = examples(
        {
            "keys": [
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                    "kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
                    "use": "sig",
                    "alg": "ES256",
                    "x5c": ["MIIBsjCCAVigAwIBAgIU…"],
                }
            ]
        }
    )

    keys: list[Jwk]
