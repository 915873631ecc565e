"""Signed support certificates: a JWT (ES256) stating an installation's support end, which a
Timex client can check offline against the public key served at `/.well-known/jwks.json`."""

import base64
import hashlib
from datetime import date, datetime

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ALGORITHM = "ES256"
_COORDINATE_BYTES = 32  # P-256


def generate_private_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _thumbprint(public: dict) -> str:
    """RFC 7638: the key's id is the hash of its required members, so it names the key itself."""
    canonical = orjson.dumps({k: public[k] for k in ("crv", "kty", "x", "y")}, option=orjson.OPT_SORT_KEYS)
    return _b64(hashlib.sha256(canonical).digest()).decode()


class CertificateSigner:
    """Signs with `cryptography` directly: a certificate is signed on every support-state read, and a
    general JWT library's per-call work (header and key handling) cost as much again as the signature."""

    def __init__(self, private_key_pem: str, issuer: str):
        self._private = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(self._private, ec.EllipticCurvePrivateKey) or self._private.curve.name != "secp256r1":
            raise ValueError("the certificate key must be an EC P-256 private key")
        numbers = self._private.public_key().public_numbers()
        public = {"kty": "EC", "crv": "P-256",
                  "x": _b64(numbers.x.to_bytes(_COORDINATE_BYTES, "big")).decode(),
                  "y": _b64(numbers.y.to_bytes(_COORDINATE_BYTES, "big")).decode()}
        self.kid = _thumbprint(public)
        self.public_jwk = {**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM}
        self.issuer = issuer
        self._header = _b64(orjson.dumps({"alg": ALGORITHM, "kid": self.kid, "typ": "JWT"}))
        self._ecdsa = ec.ECDSA(hashes.SHA256())

    def certificate(self, code: str, support_end: date, as_of: date, issued_at: datetime) -> str:
        claims = {"iss": self.issuer, "sub": code, "support_end": support_end.isoformat(),
                  "as_of": as_of.isoformat(), "iat": int(issued_at.timestamp())}
        signing_input = self._header + b"." + _b64(orjson.dumps(claims))
        r, s = decode_dss_signature(self._private.sign(signing_input, self._ecdsa))
        signature = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")  # JWS: r || s
        return (signing_input + b"." + _b64(signature)).decode()

    def jwks(self) -> dict:
        return {"keys": [self.public_jwk]}
