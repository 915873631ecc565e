"""Signed support certificates: a JWT (ES256) stating an installation's support end as of a day, which a
Timex client can check offline until it expires (`exp`, `CERTIFICATE_LIFETIME_DAYS` after it was issued): with
the root certificate it pins, through the signing key's certificate in the header's `x5c` (see
`service.verification`), or against the public keys served at `/.well-known/jwks.json`."""

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwk
from jose.utils import base64url_encode

ALGORITHM = "ES256"


def generate_private_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _thumbprint(public: dict) -> str:
    """RFC 7638: the key's id is the hash of its required members, so it names the key itself."""
    canonical = json.dumps({k: public[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def expires(certificate: str) -> int | None:
    """The certificate's `exp` (seconds since the epoch), read without verifying it: the service reads its own
    certificates, stored in the ledger. None for one signed before certificates expired."""
    payload = certificate.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims.get("exp")


def public_key_of(private_key_pem: str) -> ec.EllipticCurvePublicKey:
    private = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise ValueError("a signing key is an EC key")
    return private.public_key()


def kid_of(key_pem: str) -> str:
    """The key's id (RFC 7638), from its private or its public key (PEM)."""
    return _thumbprint(_public(jwk.construct(key_pem, ALGORITHM)))


def _public(private: jwk.Key) -> dict:
    return {k: v for k, v in private.public_key().to_dict().items() if k in ("kty", "crv", "x", "y")}


class CertificateSigner:
    """Signs with one key. `chain` is the key's X.509 certificate by the root of trust (DER), carried as `x5c` in
    every certificate's header and in the key's JWK; not the root's, which a verifier must hold already (and
    ~700 bytes less a certificate). The `kid` is known before anything is signed."""

    def __init__(self, private_key_pem: str, issuer: str, lifetime: timedelta, chain: Sequence[bytes]):
        self._private = jwk.construct(private_key_pem, ALGORITHM)
        public = _public(self._private)
        self.kid = _thumbprint(public)
        x5c = [base64.b64encode(der).decode() for der in chain]  # RFC 7515 §4.1.6: base64, not base64url
        self.public_jwk = {**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM, "x5c": x5c}
        self.issuer = issuer
        self.lifetime = lifetime
        # Every certificate has the same header: encoded once, not per certificate (a third of `jwt.encode`).
        self._header = base64url_encode(orjson.dumps({"alg": ALGORITHM, "kid": self.kid, "typ": "JWT", "x5c": x5c}))

    def certificate(self, code: str, support_end: date, as_of: date, issued_at: datetime) -> str:
        """A compact JWS (RFC 7515), signed by python-jose's key as `jwt.encode` would sign it."""
        iat = int(issued_at.timestamp())
        claims = {
            "iss": self.issuer,
            "sub": code,
            "support_end": support_end.isoformat(),
            "as_of": as_of.isoformat(),
            "iat": iat,
            "exp": iat + int(self.lifetime.total_seconds()),
        }
        signing_input = self._header + b"." + base64url_encode(orjson.dumps(claims))
        return (signing_input + b"." + base64url_encode(self._private.sign(signing_input))).decode()
