"""A root of trust and a signing key it certified, made for a test: what a root's owner gives the service."""

from datetime import datetime

from cryptography import x509

from service.certificates import generate_private_key, kid_of, public_key_of
from service.trust import Root, make_root


def certified_key(not_before: datetime, not_after: datetime) -> tuple[bytes, str, bytes]:
    """A new root (its certificate, PEM), a new signing key (PEM), and the key's certificate by that root (DER),
    valid from `not_before` to `not_after`."""
    root_key, root_pem = make_root("test root", not_before)
    root = Root(x509.load_pem_x509_certificate(root_pem)).with_key(root_key)
    key = generate_private_key()
    return root_pem, key, root.certify(public_key_of(key), kid_of(key), not_before, not_after)
