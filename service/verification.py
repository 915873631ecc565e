"""The reference verifier of support certificates, as a Timex build runs it offline: with nothing but the root
certificate it pins (and, if it has one, the newest revocation list). docs/certificates.md states the same
algorithm step by step, language-neutral; `timex-licensing verify-certificate` runs this one.

No I/O and no clock: the instant to verify at is given.
"""

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


class Rejected(Exception):
    """Why a certificate is not to be trusted: `reason` is stable (the test vectors name it), `str()` says it."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _b64url(segment: str) -> bytes:
    if "=" in segment:
        raise ValueError("padding")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_object(segment: str) -> dict[str, Any]:
    value = json.loads(_b64url(segment))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _within(certificate: x509.Certificate, instant: datetime) -> bool:
    return certificate.not_valid_before_utc <= instant <= certificate.not_valid_after_utc


def verify(
    token: str,
    *,
    root: x509.Certificate,
    on: datetime,
    installation: str | None = None,
    revocation_list: x509.CertificateRevocationList | None = None,
) -> dict[str, Any]:
    """The certificate's claims, if `token` is a support certificate signed by a key that `root` certified, valid
    `on`, of `installation` (if given) and not signed by a key revoked before it signed; else `Rejected`."""
    # 1. Three base64url segments: the header and the claims are JSON objects.
    try:
        header_segment, claims_segment, signature_segment = token.strip().split(".")
        header = _json_object(header_segment)
        claims = _json_object(claims_segment)
        signature = _b64url(signature_segment)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Rejected("malformed", "not a compact JWS of two JSON objects and a signature") from None
    if header.get("alg") != "ES256" or "crit" in header or len(signature) != 64:
        raise Rejected("malformed", "the header must say alg ES256, with no crit, and the signature be 64 bytes")

    # 2. The signing key's certificate: x5c[0]. Whatever else x5c holds is not trusted: the root is the pinned one.
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not x5c or not isinstance(x5c[0], str):
        raise Rejected("no_chain", "the header carries no x5c: the signing key's certificate is missing")
    try:
        key_certificate = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
    except (ValueError, binascii.Error):
        raise Rejected("no_chain", "x5c[0] is not a DER X.509 certificate in base64") from None

    public_key = key_certificate_checked(key_certificate, root=root, on=on)

    # 5. The signature (RFC 7518 §3.4: r and s, 32 bytes each) over the first two segments, as sent.
    signed = f"{header_segment}.{claims_segment}".encode("ascii")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Rejected("bad_signature", "the signature does not verify with the certified key") from None

    # 6. The claims: issued before `on`, not expired, signed while the key's certificate was valid; the installation.
    iat, exp = claims.get("iat"), claims.get("exp")
    if not (isinstance(iat, int) and isinstance(exp, int)) or not isinstance(claims.get("sub"), str):
        raise Rejected("malformed", "the claims lack an integer iat and exp, or the sub")
    issued = datetime.fromtimestamp(iat, UTC)
    if issued > on:
        raise Rejected("not_yet_valid", "issued after the instant it is verified at")
    if on.timestamp() >= exp:
        raise Rejected("expired", "the certificate has expired")
    if not _within(key_certificate, issued):
        raise Rejected("key_certificate_expired", "signed when the key's certificate was not valid")
    if installation is not None and claims["sub"] != installation.upper():
        raise Rejected("wrong_installation", "the certificate is of another installation")

    # 7. Revocation: a list the root signed; a key listed signs nothing trusted from its invalidity date on.
    if revocation_list is not None:
        if revocation_list.issuer != root.subject or not revocation_list.is_signature_valid(
            root.public_key()  # type: ignore[arg-type]
        ):
            raise Rejected("bad_revocation_list", "the revocation list is not signed by the pinned root")
        revoked = revocation_list.get_revoked_certificate_by_serial_number(key_certificate.serial_number)
        if revoked is not None and issued >= _revoked_since(revoked):
            raise Rejected("key_revoked", "the signing key was revoked before it signed this")

    return claims


def key_certificate_checked(
    key_certificate: x509.Certificate, *, root: x509.Certificate, on: datetime
) -> ec.EllipticCurvePublicKey:
    """Steps 3 and 4: the signing key that `root` certified for signing, valid `on`; else `Rejected`. The service
    checks a signing key's certificate given to it with this too, before it publishes the key."""
    # 3. The chain: the root issued the key's certificate, and both are valid on the day.
    try:
        if key_certificate.issuer != root.subject:
            raise InvalidSignature
        key_certificate.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise Rejected("untrusted_key", "the signing key is not certified by the pinned root") from None
    if not (_within(root, on) and _within(key_certificate, on)):
        raise Rejected("key_certificate_expired", "the root's or the signing key's certificate is not valid then")

    # 4. The key's certificate is for signing: not a CA, digital signature allowed, an EC P-256 key.
    public_key = key_certificate.public_key()
    try:
        constraints = key_certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = key_certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise Rejected("key_not_for_signing", "the key's certificate lacks basic constraints or key usage") from None
    if (
        constraints.ca
        or not usage.digital_signature
        or not isinstance(public_key, ec.EllipticCurvePublicKey)
        or public_key.curve.name != "secp256r1"
    ):
        raise Rejected("key_not_for_signing", "the key's certificate does not certify a P-256 key for signatures")
    return public_key


def _revoked_since(revoked: x509.RevokedCertificate) -> datetime:
    try:
        invalidity = revoked.extensions.get_extension_for_class(x509.InvalidityDate).value
    except x509.ExtensionNotFound:
        return revoked.revocation_date_utc
    return invalidity.invalidity_date_utc
