"""Certificates already signed, reused for the same statement: a certificate states an installation's support
end as of a business day, signed by one key, so a second read of the installation that day states nothing new.

Each process keeps the certificates it signed, at most `CERTIFICATE_CACHE_SIZE`, the oldest forgotten first
(those of an earlier day, or of a retired key, are never asked for again). A certificate forgotten is signed
again when next asked for, and is the same certificate (`CertificateSigner`): so is another process's."""

from collections import OrderedDict
from datetime import date, datetime

from service.certificates import CertificateSigner

Statement = tuple[str, date, date, str]
"""What a certificate states, and who signs it: the installation's code, its support end, the business day, the
signing key's id."""


class IssuedCertificates:
    def __init__(self, capacity: int):
        self._capacity = capacity
        self._issued: OrderedDict[Statement, str] = OrderedDict()

    def certificate(self, signer: CertificateSigner, code: str, support_end: date, as_of: date, now: datetime) -> str:
        """The statement's certificate, signed now if this process does not keep it."""
        statement = (code, support_end, as_of, signer.kid)
        certificate = self._issued.get(statement)
        if certificate is None:
            certificate = signer.certificate(code, support_end, as_of, now)
            if len(self._issued) >= self._capacity:
                self._issued.popitem(last=False)
            self._issued[statement] = certificate
        return certificate
