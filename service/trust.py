"""The root of trust: an X.509 root certificate that a Timex build pins, and what it signs.

Smartec keeps the root's private key offline (`timex-licensing init-root`). With it, each signing key gets an
X.509 certificate (`certify`; or `certify_request`, from the request the service made for a key it keeps, offline:
`signing_request`), carried in every support certificate's JWS header as `x5c`, and the signing keys
revoked after a compromise are listed in a root-signed X.509 CRL (`revocation_list`). A verifier that holds only
`root.pem` checks the chain, then the signature (see docs/certificates.md and `service.verification`).

Without a configured root (`ROOT_CERTIFICATE`), a development service makes a root of its own in
`DEV_ROOT_DIR` (`development_root`): certificates then verify only against that directory's `root.pem`.
"""

import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.certificates import kid_of

log = logging.getLogger(__name__)

ROOT_KEY_FILE = "root-key.pem"
ROOT_CERTIFICATE_FILE = "root.pem"
ROOT_YEARS = 25
ORGANIZATION = "Smartec"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Root:
    """The root certificate, and its private key where this process may certify (a development root, or the
    `--root-key` given to a command); None in a service that only ships certificates made elsewhere."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | None = None

    def with_key(self, key_pem: bytes) -> "Root":
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != self.certificate.public_key():
            raise ValueError("the root key is not the key of the root certificate")
        return Root(self.certificate, key)

    def _key(self) -> ec.EllipticCurvePrivateKey:
        if self.key is None:
            raise ValueError("the root's private key is needed (--root-key)")
        return self.key

    def certify(
        self, public_key: ec.EllipticCurvePublicKey, kid: str, not_before: datetime, not_after: datetime
    ) -> bytes:
        """A signing key's certificate (DER): good for signing support certificates only (not a CA, digital
        signature alone), named by its `kid`."""
        root = self.certificate
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(kid))
            .issuer_name(root.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .sign(self._key(), hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.DER)

    def certify_request(
        self, request: x509.CertificateSigningRequest, not_before: datetime, not_after: datetime
    ) -> bytes:
        """`certify` the key that signed `request` (made by `signing_request`), after checking it: its signature
        verifies with the key it names (so the key's holder asked, and nothing in it was changed since), the key is
        EC P-256, and it asks for its kid's name alone. `ValueError` says what is wrong."""
        if not request.is_signature_valid:
            raise ValueError(
                "the request's signature does not verify with its key: it was altered, or not signed by it"
            )
        public_key = request.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != "secp256r1":
            raise ValueError("the request is not for an EC P-256 key")
        kid = kid_of(
            public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
        )
        if request.subject != _name(kid):
            raise ValueError(f"the request does not name its key: its subject must be O={ORGANIZATION}, CN={kid}")
        if len(request.extensions):
            raise ValueError("the request asks for extensions: a signing key's certificate has the root's profile only")
        return self.certify(public_key, kid, not_before, not_after)

    def revocation_list(self, revoked: list["Revoked"], number: int, now: datetime) -> bytes:
        """The root-signed CRL (DER) of every revoked signing key: each by its certificate's serial number, the
        instant of revocation, and (RFC 5280 §5.3.2, invalidity date) the instant from which its signatures are
        not to be trusted."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now)
            .next_update(self.certificate.not_valid_after_utc)
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        for entry in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(entry.serial)
                .revocation_date(entry.revoked_at)
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                .add_extension(x509.InvalidityDate(entry.since.replace(tzinfo=None)), critical=False)
                .build()
            )
        return builder.sign(self._key(), hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class Revoked:
    serial: int
    revoked_at: datetime
    since: datetime
    """Certificates signed from this instant on are rejected."""


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def signing_request(private_key_pem: str) -> bytes:
    """The PKCS #10 request (DER) for a signing key's certificate, as the root's holder is given it to certify
    (`Root.certify_request`): the key's kid as its name, signed by the key itself."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("a signing key is an EC key")
    request = (
        x509.CertificateSigningRequestBuilder().subject_name(_name(kid_of(private_key_pem))).sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER)


def load_request(data: bytes) -> x509.CertificateSigningRequest:
    """A certificate signing request, PEM or DER (`ValueError` if it is neither)."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_csr(data)
    return x509.load_der_x509_csr(data)


def make_root(common_name: str, now: datetime, years: int = ROOT_YEARS) -> tuple[bytes, bytes]:
    """A new root: its private key and its self-signed certificate (PEM), ECDSA P-384, good for certifying
    signing keys and signing revocation lists only, and for no longer chain than one signing key below it."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = _name(common_name)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    return _pem(key), certificate.public_bytes(serialization.Encoding.PEM)


def write_root(directory: Path, common_name: str, now: datetime) -> None:
    """`init-root`: the root's two files in `directory`, made at once or not at all; an existing root is never
    overwritten. The private key is readable by its owner only."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: a root is never overwritten")
    key_pem, certificate_pem = make_root(common_name, now)
    staging = Path(tempfile.mkdtemp(prefix=".root-", dir=directory.parent))
    descriptor = os.open(staging / ROOT_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(key_pem)
    (staging / ROOT_CERTIFICATE_FILE).write_bytes(certificate_pem)
    try:
        # A rename is atomic (and replaces only an empty directory): processes starting at once each stage a
        # root, and the first to rename wins.
        os.rename(staging, directory)
    except OSError:
        shutil.rmtree(staging)
        raise FileExistsError(f"{directory} is not empty: a root is never overwritten") from None


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def configured_root(root_certificate: str | None, dev_root_dir: Path, now: datetime) -> Root:
    """`ROOT_CERTIFICATE` (a PEM file's path, or the PEM itself), or else the development root in `dev_root_dir`."""
    if root_certificate is None:
        return development_root(dev_root_dir, now)
    if root_certificate.lstrip().startswith("-----BEGIN"):
        return Root(x509.load_pem_x509_certificate(root_certificate.encode()))
    return Root(load_certificate(Path(root_certificate)))


def development_root(directory: Path, now: datetime) -> Root:
    """The development root in `directory`, made there on first use (several processes may start at once: one
    root is kept, and every process uses it)."""
    if not (directory / ROOT_CERTIFICATE_FILE).exists():
        try:
            write_root(directory, f"Timex licensing development root {secrets.token_hex(4)}", now)
            log.warning("made a development root in %s", directory)
        except (FileExistsError, OSError):
            if not (directory / ROOT_CERTIFICATE_FILE).exists():
                raise
    root = Root(load_certificate(directory / ROOT_CERTIFICATE_FILE))
    log.warning(
        "signing keys are certified by the development root %s: certificates verify only against it; "
        "set ROOT_CERTIFICATE (made by `timex-licensing init-root`) in production",
        directory / ROOT_CERTIFICATE_FILE,
    )
    return root.with_key((directory / ROOT_KEY_FILE).read_bytes())
