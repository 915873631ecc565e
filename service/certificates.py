"""Signed support certificates: a JWT (ES256) stating an installation's support end as of a day, which a
Timex client can check offline until it expires (`exp`, `CERTIFICATE_LIFETIME_DAYS` after it was issued): with
the root certificate it pins, through the signing key's certificate in the header's `x5c` (see
`service.verification`), or against the public keys served at `/.well-known/jwks.json`."""

import asyncio
import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jose import jwk
from jose.utils import base64url_encode

ALGORITHM = "ES256"
# RFC 6979: the signature's nonce derived from the key and the message, so that one statement signed twice, by any
# process, is one certificate (a random nonce made each signature, and so each certificate, differ).
_DETERMINISTIC_ES256 = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


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


def _private_key(private_key_pem: str) -> ec.EllipticCurvePrivateKey:
    private = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise ValueError("a signing key is an EC key")
    return private


def public_key_of(private_key_pem: str) -> ec.EllipticCurvePublicKey:
    return _private_key(private_key_pem).public_key()


def kid_of(key_pem: str) -> str:
    """The key's id (RFC 7638), from its private or its public key (PEM)."""
    return _thumbprint(_public(jwk.construct(key_pem, ALGORITHM)))


def _public(private: jwk.Key) -> dict:
    return {k: v for k, v in private.public_key().to_dict().items() if k in ("kty", "crv", "x", "y")}


class CertificateSigner:
    """Signs with one key. `chain` is the key's X.509 certificate by the root of trust (DER), carried as `x5c` in
    every certificate's header and in the key's JWK; not the root's, which a verifier must hold already (and
    ~700 bytes less a certificate). The `kid` is known before anything is signed.

    A statement (an installation's support end as of a business day) signed on one day is one certificate,
    whichever process signs it and however often: its `iat` is the start of the business day in `zone` (or the
    moment the key was certified, if later: a verifier refuses an `iat` outside the key's certificate), and the
    signature is deterministic (RFC 6979)."""

    def __init__(self, private_key_pem: str, issuer: str, lifetime: timedelta, chain: Sequence[bytes], *, zone: tzinfo):
        self._key = _private_key(private_key_pem)
        public = _public(jwk.construct(self._key, ALGORITHM))  # the key read once, not its PEM again
        self.kid = _thumbprint(public)
        x5c = [base64.b64encode(der).decode() for der in chain]  # RFC 7515 §4.1.6: base64, not base64url
        self.public_jwk = {**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM, "x5c": x5c}
        self.issuer = issuer
        self.lifetime = lifetime
        self._zone = zone
        self._certified_at = x509.load_der_x509_certificate(chain[0]).not_valid_before_utc if chain else None
        self._day: tuple[datetime, datetime] | None = None  # the business day last signed on: its start and end
        self._turn: _Turn | None = None  # the certificates asked for in this turn of the event loop
        # Every certificate has the same header: encoded once, not per certificate (a third of `jwt.encode`).
        self._header = base64url_encode(orjson.dumps({"alg": ALGORITHM, "kid": self.kid, "typ": "JWT", "x5c": x5c}))

    def issued_at(self, now: datetime) -> datetime:
        """When a certificate signed at `now` is issued: the start of that business day, or the moment the key was
        certified if later. The same all day, in every process."""
        if self._day is not None and self._day[0] <= now < self._day[1]:
            start = self._day[0]
        else:
            day = now.astimezone(self._zone).date()
            start = datetime.combine(day, time(), self._zone)
            end = datetime.combine(day + timedelta(days=1), time(), self._zone)
            # Kept for the rest of the day (converting to the zone cost 11 µs of a signature's 120 in a worker), unless
            # the zone's offset changes that day: then the day's instants need not run from its start to the next
            # day's (a clock put back at midnight brings the day before back for an hour), and each is converted.
            self._day = (start, end) if start.utcoffset() == end.utcoffset() else None
        return start if self._certified_at is None else max(start, self._certified_at)

    def certificate(self, code: str, support_end: date, as_of: date, now: datetime) -> str:
        """A compact JWS (RFC 7515) of the statement, signed at `now`: the same certificate all that day."""
        iat = int(self.issued_at(now).timestamp())
        claims = {
            "iss": self.issuer,
            "sub": code,
            "support_end": support_end.isoformat(),
            "as_of": as_of.isoformat(),
            "iat": iat,
            "exp": iat + int(self.lifetime.total_seconds()),
        }
        signing_input = self._header + b"." + base64url_encode(orjson.dumps(claims))
        r, s = decode_dss_signature(self._key.sign(signing_input, _DETERMINISTIC_ES256))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # RFC 7518 §3.4: r then s, not DER
        return (signing_input + b"." + base64url_encode(signature)).decode()

    async def certificate_in_turn(self, code: str, support_end: date, as_of: date, now: datetime) -> str:
        """`certificate`, signed at the end of this turn of the event loop together with any other asked for in
        it. A signature's cost here is mostly memory: P-256 signing reads OpenSSL's 150 KB table of precomputed
        points, which a request's other work evicts (84 µs a lone signature, 26 µs one right after another,
        measured in a worker). Under load several activations reach their signature in the same turn."""
        loop = asyncio.get_running_loop()
        signed = loop.create_future()
        turn = self._turn
        if turn is None or turn.loop is not loop:  # a turn is its loop's: one closed never blocks the next
            turn = self._turn = _Turn(loop)
            loop.call_soon(self._sign, turn)
        turn.asked.append((signed, (code, support_end, as_of, now)))
        return await signed

    def _sign(self, turn: "_Turn") -> None:
        if self._turn is turn:
            self._turn = None
        for signed, statement in turn.asked:
            if signed.done():  # its request was given up meanwhile
                continue
            try:
                signed.set_result(self.certificate(*statement))
            except Exception as refusal:
                signed.set_exception(refusal)


@dataclass
class _Turn:
    loop: asyncio.AbstractEventLoop
    asked: list[tuple[asyncio.Future[str], tuple[str, date, date, datetime]]] = field(default_factory=list)
